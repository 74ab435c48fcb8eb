/**
 * The registry panel's state: the search, the current page of models, the expanded
 * models' versions, and what went wrong. Views re-render on `stateChanged`.
 */
import { VDomModel } from '@jupyterlab/ui-components';
import { Poll } from '@lumino/polling';

import {
  IJobRecord,
  IJobRow,
  IModelRow,
  ISchedule,
  ISchedulerInfo,
  IVersionRow,
  RegistryError,
  fetchJobs,
  fetchModels,
  fetchSchedules,
  fetchVersions,
  runNow,
  setPaused
} from './api';

export interface IExpanded {
  versions: IVersionRow[];
  nextPageToken: string | null;
  loading: boolean;
  error: RegistryError | null;
}

/** How often a visible panel refreshes itself, in milliseconds. */
export const AUTO_REFRESH_MS = 30_000;

/** Another section of the panel that refreshes with the registry (same button, same poll). */
export interface IRefreshable {
  refresh(options?: { quiet?: boolean }): Promise<void>;
  setVisible(visible: boolean): void;
}

/** The first automatic retry of a store that cannot be reached, in milliseconds (a setting). */
export const RETRY_FIRST_MS = 5_000;
/** Automatic retries double their wait up to this, in milliseconds. */
export const RETRY_MAX_MS = 30_000;

/**
 * Retries a section's load by itself while the store (or the Jupyter server) cannot be
 * reached: first after 5 s, then waiting twice as long each time up to 30 s, only while
 * the panel is shown; the first answer ends it. The registry and the Jobs section each
 * own one and tell it how every load ended.
 */
export class StoreRetry {
  /**
   * @param load reloads the section quietly; it reports its outcome through `note`
   * @param changed tells the views that `due` changed
   */
  constructor(
    private readonly _load: () => Promise<void>,
    private readonly _changed: () => void
  ) {}

  /** When the next automatic retry is due; null when none is planned. */
  get due(): Date | null {
    return this._due;
  }

  /** Wait before the first retry in milliseconds (0: no automatic retries). */
  set firstDelay(ms: number) {
    this._first = Math.max(0, ms);
    this._delay = this._first;
    if (this._first === 0) {
      this._cancel();
    }
  }

  /** How loads ended: one that found the store unreachable plans the next retry, any other outcome ends retrying. */
  note(...errors: (RegistryError | null)[]): void {
    this._failing = errors.some(e => e?.kind === 'unreachable');
    if (this._failing) {
      this._schedule();
    } else {
      this._cancel();
      this._delay = this._first;
    }
  }

  /** Retries wait while the panel is hidden; showing it again retries soon. */
  setVisible(visible: boolean): void {
    this._visible = visible;
    this._cancel();
    if (visible && this._failing) {
      this._delay = this._first;
      this._schedule();
    }
  }

  dispose(): void {
    this._disposed = true;
    this._cancel();
  }

  private _schedule(): void {
    if (this._timer !== null || !this._visible || this._first === 0 || this._disposed) {
      return; // one retry at a time: a failed refresh meanwhile does not add one
    }
    const wait = this._delay;
    this._delay = Math.min(2 * wait, Math.max(RETRY_MAX_MS, this._first));
    this._due = new Date(Date.now() + wait);
    this._timer = window.setTimeout(() => {
      this._timer = null;
      this._due = null;
      void this._load().catch(() => undefined);
    }, wait);
    this._changed();
  }

  private _cancel(): void {
    if (this._timer !== null) {
      window.clearTimeout(this._timer);
      this._timer = null;
    }
    if (this._due !== null) {
      this._due = null;
      this._changed();
    }
  }

  private _first = RETRY_FIRST_MS;
  private _delay = RETRY_FIRST_MS;
  private _due: Date | null = null;
  private _timer: number | null = null;
  private _visible = false;
  private _failing = false;
  private _disposed = false;
}

export class RegistryModel extends VDomModel {
  readonly versionsPageSize: number;

  constructor(options: { versionsPageSize?: number } = {}) {
    super();
    this.versionsPageSize = options.versionsPageSize ?? 10;
    // Gentle auto-refresh: only while the panel is shown and the browser tab visible,
    // backing off while the server or store is failing.
    this._poll = new Poll({
      auto: false,
      factory: () => this.refreshAll({ quiet: true }),
      frequency: { interval: AUTO_REFRESH_MS, backoff: true, max: 5 * AUTO_REFRESH_MS },
      name: 'mlops-nb:registry',
      standby: () => (this._visible && this._autoRefresh ? 'when-hidden' : true)
    });
    this.retry = new StoreRetry(
      () => this.refresh({ quiet: true }),
      () => this.stateChanged.emit()
    );
  }

  /** Retries the list by itself while the store cannot be reached. */
  readonly retry: StoreRetry;

  /** Models a page; a change reloads from the first page. */
  get pageSize(): number {
    return this._pageSize;
  }

  /** Apply the user's settings: models a page and the auto-refresh interval (0 = off). */
  configure(options: { pageSize: number; autoRefreshSeconds: number }): void {
    const pageSize = Math.max(1, Math.min(1000, Math.round(options.pageSize)));
    const interval = Math.max(0, options.autoRefreshSeconds) * 1000;
    this._autoRefresh = interval > 0;
    if (interval > 0) {
      this._poll.frequency = { interval, backoff: true, max: Math.max(5 * interval, AUTO_REFRESH_MS) };
    }
    if (pageSize !== this._pageSize) {
      this._pageSize = pageSize;
      if (this._started) {
        void this.search(this._query);
      }
    }
    if (this._autoRefresh && this._visible) {
      void this._poll.start();
    } else {
      void this._poll.stop();
    }
  }

  get query(): string {
    return this._query;
  }
  get models(): IModelRow[] {
    return this._models;
  }
  get loading(): boolean {
    return this._loading;
  }
  get error(): RegistryError | null {
    return this._error;
  }
  get pageIndex(): number {
    return this._tokens.length - 1;
  }
  get hasNext(): boolean {
    return this._next !== null;
  }
  get hasPrevious(): boolean {
    return this._tokens.length > 1;
  }
  get refreshedAt(): Date | null {
    return this._refreshedAt;
  }
  expanded(name: string): IExpanded | undefined {
    return this._expanded.get(name);
  }

  /** The aliases a version holds, from its model's row (where MLflow keeps them). */
  aliasesOf(name: string, version: string): string[] {
    const row = this._models.find(m => m.name === name);
    return row
      ? Object.keys(row.aliases)
          .filter(alias => row.aliases[alias] === version)
          .sort()
      : [];
  }

  /** Refresh `other` whenever the registry refreshes (toolbar button, auto-refresh, first show). */
  follow(other: IRefreshable): void {
    this._followers.push(other);
  }

  /** Refresh the registry and every section following it; quietly, a failure is thrown (the poll backs off). */
  async refreshAll(options: { quiet?: boolean } = {}): Promise<void> {
    const results = await Promise.allSettled([
      this.refresh(options),
      ...this._followers.map(f => f.refresh(options))
    ]);
    const failed = results.find(r => r.status === 'rejected') as PromiseRejectedResult | undefined;
    if (failed && options.quiet) {
      throw failed.reason;
    }
  }

  /** Start or pause auto-refresh with the panel's visibility. */
  setVisible(visible: boolean): void {
    this._visible = visible;
    this.retry.setVisible(visible);
    this._followers.forEach(f => f.setVisible(visible));
    if (!visible) {
      return;
    }
    if (!this._started) {
      this._started = true;
      if (!this._autoRefresh) {
        void this.search(this._query);
        this._followers.forEach(f => void f.refresh().catch(() => undefined));
        return;
      }
      this._loading = true;
      this.stateChanged.emit();
    }
    if (this._autoRefresh) {
      // The poll's first tick is at once: the first load, or a refresh on showing again.
      void this._poll.start();
    }
  }

  /** Search models whose name contains `query` (case-insensitive), from the first page. */
  async search(query: string): Promise<void> {
    this._query = query.trim();
    this._tokens = [null];
    await this._loadPage(false);
  }

  async nextPage(): Promise<void> {
    if (this._next === null) {
      return;
    }
    this._tokens.push(this._next);
    await this._loadPage(false);
  }

  async previousPage(): Promise<void> {
    if (this._tokens.length <= 1) {
      return;
    }
    this._tokens.pop();
    await this._loadPage(false);
  }

  /**
   * Reload the current page and every expanded model. `quiet` keeps what is shown
   * until the answer arrives (auto-refresh must not flicker).
   */
  async refresh(options: { quiet?: boolean } = {}): Promise<void> {
    await this._loadPage(!!options.quiet);
    await Promise.all([...this._expanded.keys()].map(name => this._loadVersions(name, true)));
  }

  /** Expand or collapse a model's versions. */
  async toggle(name: string): Promise<void> {
    if (this._expanded.has(name)) {
      this._expanded.delete(name);
      this.stateChanged.emit();
      return;
    }
    this._expanded.set(name, { versions: [], nextPageToken: null, loading: true, error: null });
    this.stateChanged.emit();
    await this._loadVersions(name, false);
  }

  /** Append the next page of a model's versions. */
  async moreVersions(name: string): Promise<void> {
    const entry = this._expanded.get(name);
    if (!entry || entry.nextPageToken === null) {
      return;
    }
    entry.loading = true;
    this.stateChanged.emit();
    await this._fetchVersions(name, entry, this.versionsPageSize, entry.nextPageToken);
  }

  dispose(): void {
    if (this.isDisposed) {
      return;
    }
    this._poll.dispose();
    this.retry.dispose();
    super.dispose();
  }

  private async _loadPage(quiet: boolean): Promise<void> {
    const ticket = ++this._ticket;
    if (!quiet) {
      this._loading = true;
      this.stateChanged.emit();
    }
    try {
      const page = await fetchModels(this._query, this._pageSize, this._tokens[this._tokens.length - 1]);
      if (ticket !== this._ticket) {
        return; // a newer search or page answered first
      }
      this._models = page.models;
      this._next = page.next_page_token;
      this._error = null;
      this._refreshedAt = new Date();
    } catch (error) {
      if (ticket !== this._ticket) {
        return;
      }
      this._error = asError(error);
      if (!quiet) {
        this._models = [];
        this._next = null;
      }
    } finally {
      if (ticket === this._ticket) {
        this._loading = false;
        this.retry.note(this._error);
        this.stateChanged.emit();
      }
    }
    if (this._error && quiet) {
      throw this._error; // lets the poll back off
    }
  }

  private async _loadVersions(name: string, keepShown: boolean): Promise<void> {
    const entry = this._expanded.get(name);
    if (!entry) {
      return;
    }
    // Reload as many versions as are shown, so a refresh does not fold a long list.
    const size = Math.min(1000, Math.max(this.versionsPageSize, keepShown ? entry.versions.length : 0));
    await this._fetchVersions(name, entry, size, null);
  }

  /**
   * Fetch a page of versions into `entry`: the first page replaces what is shown, a
   * later one (`token`) is appended. Aliases come with the models list, so a page of
   * versions is one registry query.
   */
  private async _fetchVersions(name: string, entry: IExpanded, size: number, token: string | null): Promise<void> {
    try {
      const page = await fetchVersions(name, size, token);
      if (this._expanded.get(name) !== entry) {
        return; // collapsed meanwhile
      }
      entry.versions = token ? entry.versions.concat(page.versions) : page.versions;
      entry.nextPageToken = page.next_page_token;
      entry.error = null;
    } catch (error) {
      entry.error = asError(error);
    }
    entry.loading = false;
    this.stateChanged.emit();
  }

  private _query = '';
  private _models: IModelRow[] = [];
  private _tokens: (string | null)[] = [null];
  private _next: string | null = null;
  private _loading = false;
  private _error: RegistryError | null = null;
  private _expanded = new Map<string, IExpanded>();
  private _refreshedAt: Date | null = null;
  private _ticket = 0;
  private _visible = false;
  private _autoRefresh = true;
  private _pageSize = 25;
  private _started = false;
  private _poll: Poll;
  private _followers: IRefreshable[] = [];
}

/** Job statuses that will still change: the list follows them closely. */
const ACTIVE_STATUSES = new Set(['RUNNING', 'STARTING', 'RETRYING']);

/** How often the jobs list is re-read while a job it shows is running, in milliseconds. */
export const ACTIVE_JOBS_REFRESH_MS = 2_000;

/**
 * The Jobs section's state: the schedules (and whether this server runs them), the
 * recent job runs, what is being done to a schedule, and what went wrong.
 */
export class JobsModel extends VDomModel implements IRefreshable {
  readonly jobsLimit: number;

  constructor(options: { jobsLimit?: number } = {}) {
    super();
    this.jobsLimit = options.jobsLimit ?? 30;
    // While a job runs, follow it closely (status, duration) without waiting for the
    // panel's auto-refresh; idle otherwise.
    this._follow = new Poll({
      auto: true,
      factory: () => this.refresh({ quiet: true }),
      frequency: { interval: ACTIVE_JOBS_REFRESH_MS, backoff: true, max: AUTO_REFRESH_MS },
      name: 'mlops-nb:active-jobs',
      standby: () => (this._visible && this.hasActiveJobs ? 'when-hidden' : true)
    });
    this.retry = new StoreRetry(
      () => this.refresh({ quiet: true }),
      () => this.stateChanged.emit()
    );
  }

  /** Retries schedules and jobs by themselves while their stores cannot be reached. */
  readonly retry: StoreRetry;

  get schedules(): ISchedule[] {
    return this._schedules;
  }
  get scheduler(): ISchedulerInfo | null {
    return this._scheduler;
  }
  get jobs(): IJobRow[] {
    return this._jobs;
  }
  /** Nothing has been loaded yet. */
  get loading(): boolean {
    return this._loading;
  }
  get schedulesError(): RegistryError | null {
    return this._schedulesError;
  }
  get jobsError(): RegistryError | null {
    return this._jobsError;
  }
  get hasActiveJobs(): boolean {
    return this._jobs.some(j => ACTIVE_STATUSES.has(j.status));
  }
  /** What is being done to a schedule right now, to disable its buttons meanwhile. */
  busy(name: string): 'run' | 'pause' | 'resume' | undefined {
    return this._busy.get(name);
  }

  setVisible(visible: boolean): void {
    this._visible = visible;
    this.retry.setVisible(visible);
  }

  /** Reload schedules and jobs; `quiet` keeps what is shown until the answers arrive. */
  async refresh(options: { quiet?: boolean } = {}): Promise<void> {
    const ticket = ++this._ticket;
    if (!options.quiet && !this._loaded) {
      this._loading = true;
      this.stateChanged.emit();
    }
    const [schedules, jobs] = await Promise.allSettled([fetchSchedules(), fetchJobs(this.jobsLimit)]);
    if (ticket !== this._ticket) {
      return; // a newer refresh answered first
    }
    if (schedules.status === 'fulfilled') {
      this._schedules = schedules.value.schedules;
      this._scheduler = schedules.value.scheduler;
      this._schedulesError = null;
    } else {
      this._schedulesError = asError(schedules.reason);
    }
    if (jobs.status === 'fulfilled') {
      this._jobs = jobs.value.jobs;
      this._jobsError = null;
    } else {
      this._jobsError = asError(jobs.reason);
    }
    this._loaded = true;
    this._loading = false;
    this.retry.note(this._schedulesError, this._jobsError);
    this.stateChanged.emit();
    const error = this._schedulesError ?? this._jobsError;
    if (error && options.quiet) {
      throw error; // lets the polls back off
    }
  }

  /** Run a schedule's target now (in the server); resolves with the job's record. */
  async runNow(name: string): Promise<IJobRecord> {
    return this._act(name, 'run', () => runNow(name));
  }

  /** Pause or resume a schedule; resolves with the schedule as stored now. */
  async setPaused(name: string, paused: boolean): Promise<ISchedule> {
    return this._act(name, paused ? 'pause' : 'resume', () => setPaused(name, paused));
  }

  dispose(): void {
    if (this.isDisposed) {
      return;
    }
    this._follow.dispose();
    this.retry.dispose();
    super.dispose();
  }

  private async _act<T>(name: string, what: 'run' | 'pause' | 'resume', call: () => Promise<T>): Promise<T> {
    this._busy.set(name, what);
    this.stateChanged.emit();
    try {
      return await call();
    } finally {
      this._busy.delete(name);
      // What is shown is what is stored: re-read after every action, failed or not.
      await this.refresh({ quiet: true }).catch(() => undefined);
      if (this.hasActiveJobs) {
        void this._follow.refresh();
      }
    }
  }

  private _schedules: ISchedule[] = [];
  private _scheduler: ISchedulerInfo | null = null;
  private _jobs: IJobRow[] = [];
  private _loading = false;
  private _loaded = false;
  private _schedulesError: RegistryError | null = null;
  private _jobsError: RegistryError | null = null;
  private _busy = new Map<string, 'run' | 'pause' | 'resume'>();
  private _ticket = 0;
  private _visible = false;
  private _follow: Poll;
}

export function asError(error: unknown): RegistryError {
  return error instanceof RegistryError
    ? error
    : new RegistryError(String((error as Error)?.message ?? error), 0, 'other');
}
