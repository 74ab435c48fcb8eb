/**
 * The registry section's state: the search, the current page of models, the expanded
 * models' versions, and what went wrong. Views re-render on `stateChanged`.
 */
import { VDomModel } from '@jupyterlab/ui-components';
import { Poll } from '@lumino/polling';

import { ApiError, fetchModel, fetchModels, fetchVersions } from '../api';
import { IModelRow, IRefreshable, IVersionRow } from '../tokens';
import { AUTO_REFRESH_MS, StoreRetry } from './polling';

/** A model whose versions are shown. */
export interface IExpanded {
  versions: IVersionRow[];
  nextPageToken: string | null;
  loading: boolean;
  error: ApiError | null;
}

/** The registry section: models page by page (search, next and previous page), expanded versions. */
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
  get error(): ApiError | null {
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

  /**
   * A model's aliases and the versions holding them, read live from the server (what
   * the list shows may be 30 s old): dialogs about aliases check against these.
   */
  async liveAliases(name: string): Promise<{ [alias: string]: string }> {
    return (await fetchModel(name, 1)).aliases;
  }

  /** Refresh `other` whenever the registry refreshes (toolbar button, auto-refresh, first show). */
  follow(other: IRefreshable): void {
    this._followers.push(other);
  }

  /** Refresh the registry and every section following it; quietly, a failure is thrown (the poll backs off). */
  async refreshAll(options: { quiet?: boolean } = {}): Promise<void> {
    const results = await Promise.allSettled([this.refresh(options), ...this._followers.map(f => f.refresh(options))]);
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
      this._error = ApiError.from(error);
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
      entry.error = ApiError.from(error);
    }
    entry.loading = false;
    this.stateChanged.emit();
  }

  private _query = '';
  private _models: IModelRow[] = [];
  private _tokens: (string | null)[] = [null];
  private _next: string | null = null;
  private _loading = false;
  private _error: ApiError | null = null;
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
