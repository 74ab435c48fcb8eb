/**
 * The registry panel's views: the model list (search, paging, expandable versions) and
 * a version's detail tab. Both use JupyterLab's UI components and theme variables.
 */
import * as React from 'react';

import {
  InputGroup,
  ReactWidget,
  ToolbarButtonComponent,
  VDomRenderer,
  caretDownIcon,
  caretRightIcon,
  closeIcon,
  runIcon,
  stopIcon
} from '@jupyterlab/ui-components';

import { IJobRow, ISchedule, IVersionDetail, IVersionRow, RegistryError, fetchVersion } from './api';
import { keyMetrics, rankMetricNames } from './metrics';
import { JobsModel, RegistryModel } from './model';

/** What the views ask the plugin to do (dialogs, opening tabs). */
export interface IActions {
  openDetail(name: string, version: string): void;
  openNotebook(name: string, version: string): void;
  copySnippet(name: string, version: string, aliases: string[]): void;
  setAlias(name: string, version: string): void;
  removeAlias(name: string, alias: string, version: string): void;
  /** `metrics` ranked by {@link rankMetricNames}: the first is the default to judge on. */
  promote(name: string, version: string, metrics: string[]): void;
}

export function formatNumber(value: number | null | undefined): string {
  if (value === null || value === undefined) {
    return '—';
  }
  if (Number.isInteger(value)) {
    return String(value);
  }
  return Math.abs(value) >= 1e4 || Math.abs(value) < 1e-3 ? value.toExponential(3) : value.toPrecision(4);
}

export function formatTime(iso: string | null): string {
  if (!iso) {
    return '';
  }
  const date = new Date(iso);
  return isNaN(date.getTime()) ? iso : date.toLocaleString();
}

function AliasBadge(props: { alias: string; onRemove?: () => void }): JSX.Element {
  return (
    <span className="jp-mlops-badge" data-alias={props.alias}>
      @{props.alias}
      {props.onRemove && (
        <button
          className="jp-mlops-badge-remove"
          title={`Remove @${props.alias}`}
          aria-label={`Remove @${props.alias}`}
          onClick={event => {
            event.stopPropagation();
            props.onRemove!();
          }}
        >
          <closeIcon.react tag="span" elementSize="small" />
        </button>
      )}
    </span>
  );
}

function ErrorState(props: {
  error: RegistryError;
  onRetry: () => void;
  what?: 'registry' | 'jobs';
  /** When the section retries by itself (an unreachable store), if it does. */
  retryAt?: Date | null;
}): JSX.Element {
  const jobs = props.what === 'jobs';
  const unreachable = props.error.kind === 'unreachable';
  const title =
    props.error.kind === 'missing-extension'
      ? `The ${jobs ? 'jobs' : 'registry'} API is not available`
      : unreachable
        ? `The ${jobs ? 'job' : 'model'} store cannot be reached`
        : 'Something went wrong';
  return (
    <div className="jp-mlops-error" role="alert">
      <div className="jp-mlops-error-title">{title}</div>
      <div className="jp-mlops-error-message">{props.error.message}</div>
      {unreachable && props.retryAt && (
        <div className="jp-mlops-error-retry">
          Retrying by itself (next try at {props.retryAt.toLocaleTimeString()}, then less often): the{' '}
          {jobs ? 'jobs' : 'models'} show again as soon as the store answers.
        </div>
      )}
      <button className="jp-mod-styled jp-mod-accept" onClick={props.onRetry}>
        Retry
      </button>
    </div>
  );
}

function EmptyState(props: { query: string }): JSX.Element {
  if (props.query) {
    return <div className="jp-mlops-empty">No model name contains “{props.query}”.</div>;
  }
  return (
    <div className="jp-mlops-empty">
      <p>No registered models yet.</p>
      <p>Train a model in a notebook and register it from a cell:</p>
      <pre>
        %load_ext mlops_nb{'\n'}%mlops track{'\n'}# ... fit `model` ...{'\n'}%mlops register model --name my-model --alias challenger
      </pre>
      <p>It will appear here with its metrics and the notebook that trained it.</p>
    </div>
  );
}

function VersionItem(props: {
  row: IVersionRow;
  aliases: string[];
  actions: IActions;
}): JSX.Element {
  const { row, aliases, actions } = props;
  const metrics = keyMetrics(row.metrics);
  return (
    <li className="jp-mlops-version" data-version={row.version}>
      <div className="jp-mlops-version-head">
        <button
          className="jp-mlops-link jp-mlops-version-label"
          title={`Details of ${row.name} v${row.version}`}
          onClick={() => actions.openDetail(row.name, row.version)}
        >
          v{row.version}
        </button>
        {aliases.map(alias => (
          <AliasBadge key={alias} alias={alias} onRemove={() => actions.removeAlias(row.name, alias, row.version)} />
        ))}
        <span className="jp-mlops-time" title="created">
          {formatTime(row.created)}
        </span>
      </div>
      {metrics.length > 0 && (
        <div className="jp-mlops-metrics">
          {metrics.map(([key, value]) => (
            <span key={key} className="jp-mlops-metric" title={`${key} = ${value}`}>
              {key} <b>{formatNumber(value)}</b>
            </span>
          ))}
        </div>
      )}
      <div className="jp-mlops-version-actions" role="group" aria-label={`Actions on ${row.name} v${row.version}`}>
        <ToolbarButtonComponent
          label="Details"
          tooltip="Details and lineage"
          onClick={() => actions.openDetail(row.name, row.version)}
        />
        <ToolbarButtonComponent
          label="Notebook"
          tooltip="Open source notebook"
          onClick={() => actions.openNotebook(row.name, row.version)}
        />
        <ToolbarButtonComponent
          label="Copy code"
          tooltip="Copy load snippet"
          onClick={() => actions.copySnippet(row.name, row.version, aliases)}
        />
        <ToolbarButtonComponent
          label="Set alias…"
          tooltip="Set or move an alias"
          onClick={() => actions.setAlias(row.name, row.version)}
        />
        <ToolbarButtonComponent
          label="Promote…"
          tooltip="Promote if better"
          onClick={() => actions.promote(row.name, row.version, rankMetricNames(Object.keys(row.metrics)))}
        />
      </div>
    </li>
  );
}

/** The side panel's body: search box, models, their versions, paging. */
export class RegistryView extends VDomRenderer<RegistryModel> {
  constructor(model: RegistryModel, private readonly actions: IActions) {
    super(model);
    this.addClass('jp-mlops-registry');
  }

  protected render(): JSX.Element {
    const model = this.model;
    const empty = !model.loading && !model.error && model.models.length === 0;
    // One body element: the panel sizes this section to its height (layout.ts).
    return (
      <div className="jp-mlops-section-body">
        <div className="jp-mlops-search">
          <InputGroup
            type="text"
            placeholder="Search models by name"
            rightIcon="ui-components:search"
            aria-label="Search models by name"
            defaultValue={model.query}
            onChange={event => this._onSearch((event.target as HTMLInputElement).value)}
          />
        </div>
        {model.error && (
          <ErrorState error={model.error} retryAt={model.retry.due} onRetry={() => void model.refresh()} />
        )}
        {model.loading && model.models.length === 0 && <div className="jp-mlops-loading">Loading models…</div>}
        {empty && <EmptyState query={model.query} />}
        <ul className="jp-mlops-models" aria-busy={model.loading}>
          {model.models.map(row => this._renderModel(row.name))}
        </ul>
        {(model.hasPrevious || model.hasNext) && (
          <div className="jp-mlops-pager">
            <button className="jp-mod-styled" disabled={!model.hasPrevious} onClick={() => void model.previousPage()}>
              ‹ Previous
            </button>
            <span>page {model.pageIndex + 1}</span>
            <button className="jp-mod-styled" disabled={!model.hasNext} onClick={() => void model.nextPage()}>
              Next ›
            </button>
          </div>
        )}
        {model.refreshedAt && (
          <div className="jp-mlops-footer">updated {model.refreshedAt.toLocaleTimeString()}</div>
        )}
      </div>
    );
  }

  private _renderModel(name: string): JSX.Element {
    const model = this.model;
    const row = model.models.find(m => m.name === name)!;
    const open = model.expanded(name);
    const Caret = open ? caretDownIcon : caretRightIcon;
    return (
      <li key={name} className="jp-mlops-model" data-model={name}>
        <button
          className="jp-mlops-model-head"
          aria-expanded={!!open}
          title={row.description || name}
          onClick={() => void model.toggle(name)}
        >
          <Caret.react tag="span" elementSize="small" />
          <span className="jp-mlops-model-name">{name}</span>
          {row.latest_version && <span className="jp-mlops-latest">v{row.latest_version}</span>}
          {Object.entries(row.aliases)
            .sort()
            .map(([alias, version]) => (
              <span key={alias} className="jp-mlops-badge jp-mlops-badge-small" title={`@${alias} → v${version}`}>
                @{alias}:v{version}
              </span>
            ))}
        </button>
        {open && (
          <div className="jp-mlops-versions-box">
            {open.error && <ErrorState error={open.error} onRetry={() => void model.refresh()} />}
            <ul className="jp-mlops-versions">
              {open.versions.map(v => (
                <VersionItem
                  key={v.version}
                  row={v}
                  aliases={v.aliases ?? model.aliasesOf(name, v.version)}
                  actions={this.actions}
                />
              ))}
            </ul>
            {open.loading && <div className="jp-mlops-loading">Loading versions…</div>}
            {!open.loading && open.nextPageToken && (
              <button className="jp-mod-styled jp-mlops-more" onClick={() => void model.moreVersions(name)}>
                More versions
              </button>
            )}
          </div>
        )}
      </li>
    );
  }

  private _onSearch(value: string): void {
    window.clearTimeout(this._debounce);
    this._debounce = window.setTimeout(() => void this.model.search(value), 250);
  }

  private _debounce = 0;
}

function KeyValueTable(props: { rows: [string, React.ReactNode][]; empty: string }): JSX.Element {
  if (!props.rows.length) {
    return <p className="jp-mlops-muted">{props.empty}</p>;
  }
  return (
    <table className="jp-mlops-table">
      <tbody>
        {props.rows.map(([key, value]) => (
          <tr key={key}>
            <th>{key}</th>
            <td>{value}</td>
          </tr>
        ))}
      </tbody>
    </table>
  );
}

function signatureColumns(text: string | undefined): string {
  if (!text) {
    return '—';
  }
  try {
    const cols = JSON.parse(text) as { name?: string; type?: string }[];
    return cols.map(c => (c.name ? `${c.name}: ${c.type}` : c.type)).join(', ');
  } catch {
    return text;
  }
}

/** A version's detail: aliases, how to load it, lineage, metrics, params, signature, alias history. */
export class VersionDetailView extends ReactWidget {
  constructor(
    readonly modelName: string,
    readonly version: string,
    private readonly actions: IActions
  ) {
    super();
    this.addClass('jp-mlops-detail');
    void this.reload();
  }

  async reload(): Promise<void> {
    try {
      this._detail = await fetchVersion(this.modelName, this.version);
      this._error = null;
    } catch (error) {
      this._error = error as RegistryError;
    }
    this.update();
  }

  protected render(): JSX.Element {
    if (this._error) {
      return <ErrorState error={this._error} onRetry={() => void this.reload()} />;
    }
    const d = this._detail;
    if (!d) {
      return <div className="jp-mlops-loading">Loading…</div>;
    }
    const lineage: [string, React.ReactNode][] = [];
    if (d.lineage.notebook) {
      lineage.push([
        'notebook',
        <button className="jp-mlops-link" onClick={() => this.actions.openNotebook(d.name, d.version)}>
          {d.lineage.notebook}
        </button>
      ]);
    }
    for (const key of ['git.commit', 'git.branch', 'git.dirty', 'flavor']) {
      if (d.lineage[key]) {
        lineage.push([key, <code>{d.lineage[key]}</code>]);
      }
    }
    if (d.run_id) {
      lineage.push(['run id', <code>{d.run_id}</code>]);
    }
    lineage.push(['created', formatTime(d.created)]);
    return (
      <div className="jp-mlops-detail-body">
        <h2>
          {d.name} <span className="jp-mlops-muted">v{d.version}</span>{' '}
          {d.aliases.map(a => (
            <AliasBadge key={a} alias={a} onRemove={() => this.actions.removeAlias(d.name, a, d.version)} />
          ))}
        </h2>
        {d.description && <p>{d.description}</p>}
        <div className="jp-mlops-detail-actions">
          <button className="jp-mod-styled" onClick={() => this.actions.openNotebook(d.name, d.version)}>
            Open source notebook
          </button>
          <button className="jp-mod-styled" onClick={() => this.actions.copySnippet(d.name, d.version, d.aliases)}>
            Copy load snippet
          </button>
          <button className="jp-mod-styled" onClick={() => this.actions.setAlias(d.name, d.version)}>
            Set alias…
          </button>
          <button
            className="jp-mod-styled"
            onClick={() => this.actions.promote(d.name, d.version, rankMetricNames(Object.keys(d.metrics)))}
          >
            Promote if better…
          </button>
          <button className="jp-mod-styled" onClick={() => void this.reload()}>
            Refresh
          </button>
        </div>
        <h3>Lineage</h3>
        <KeyValueTable rows={lineage} empty="" />
        <h3>Metrics</h3>
        <KeyValueTable
          rows={Object.keys(d.metrics)
            .sort()
            .map(k => [k, formatNumber(d.metrics[k])])}
          empty="The source run has no metrics."
        />
        <h3>Parameters</h3>
        <KeyValueTable
          rows={Object.keys(d.params)
            .sort()
            .map(k => [k, <code>{d.params[k]}</code>])}
          empty="The source run has no parameters."
        />
        <h3>Signature</h3>
        {d.signature ? (
          <KeyValueTable
            rows={[
              ['inputs', signatureColumns(d.signature.inputs)],
              ['outputs', signatureColumns(d.signature.outputs)]
            ]}
            empty=""
          />
        ) : (
          <p className="jp-mlops-muted">No signature: register with an input example to record one.</p>
        )}
        <h3>Alias history</h3>
        {d.audit.length ? (
          <table className="jp-mlops-table jp-mlops-audit">
            <thead>
              <tr>
                <th>when</th>
                <th>who</th>
                <th>what</th>
                <th>why</th>
              </tr>
            </thead>
            <tbody>
              {d.audit
                .slice()
                .reverse()
                .map((e, i) => (
                  <tr key={i}>
                    <td>{formatTime(e.when)}</td>
                    <td>{e.who}</td>
                    <td>
                      {e.action} @{e.alias} {e.from_version ? `v${e.from_version}` : '∅'} →{' '}
                      {e.to_version ? `v${e.to_version}` : '∅'}
                    </td>
                    <td>{e.why}</td>
                  </tr>
                ))}
            </tbody>
          </table>
        ) : (
          <p className="jp-mlops-muted">No alias has moved on this version.</p>
        )}
      </div>
    );
  }

  private _detail: IVersionDetail | null = null;
  private _error: RegistryError | null = null;
}

// ---------------------------------------------------------------- jobs

/** What the Jobs section asks the plugin to do (feedback, opening tabs). */
export interface IJobActions {
  runNow(name: string): void;
  setPaused(name: string, paused: boolean): void;
  openJobNotebook(job: IJobRow): void;
}

const UNITS: [Intl.RelativeTimeFormatUnit, number][] = [
  ['day', 86_400],
  ['hour', 3_600],
  ['minute', 60],
  ['second', 1]
];

/** "in 5 minutes", "2 hours ago": how far `iso` is from `now`, in the browser's language. */
export function relativeTime(iso: string | null, now: number = Date.now()): string {
  const t = iso ? new Date(iso).getTime() : NaN;
  if (isNaN(t)) {
    return '';
  }
  const seconds = Math.round((t - now) / 1000);
  const [unit, size] = UNITS.find(([, size]) => Math.abs(seconds) >= size) ?? UNITS[UNITS.length - 1];
  return new Intl.RelativeTimeFormat(undefined, { numeric: 'auto' }).format(Math.round(seconds / size), unit);
}

/** "Wed 01:00" (within the coming week, else "Dec 24, 01:00"), or without the day; in `timeZone` if given. */
function clockText(instant: Date, now: number, parts: 'day' | 'time' | 'both', timeZone?: string): string {
  const soon = Math.abs(instant.getTime() - now) < 6 * 86_400_000;
  const day: Intl.DateTimeFormatOptions = soon ? { weekday: 'short' } : { month: 'short', day: 'numeric' };
  const time: Intl.DateTimeFormatOptions = { hour: '2-digit', minute: '2-digit' };
  const options = parts === 'day' ? day : parts === 'time' ? time : { ...day, ...time };
  return new Intl.DateTimeFormat(undefined, { ...options, timeZone }).format(instant);
}

/**
 * A schedule's next run in words that name the zone of every time shown: the browser's
 * own clock ("your time") and the schedule's zone, e.g.
 * "Wed 01:00 your time (02:00 in Europe/Berlin), in 19 hours".
 */
export function nextRunText(iso: string, zone: string, now: number = Date.now()): string {
  const instant = new Date(iso);
  if (isNaN(instant.getTime())) {
    return iso;
  }
  const local = `${clockText(instant, now, 'both')} your time`;
  const relative = relativeTime(iso, now);
  let zoned: string;
  try {
    // The schedule's day only when it is not the local one (around midnight).
    const sameDay = clockText(instant, now, 'day', zone) === clockText(instant, now, 'day');
    zoned = clockText(instant, now, sameDay ? 'time' : 'both', zone);
    if (sameDay && zoned === clockText(instant, now, 'time')) {
      return `${local} (the same in ${zone}), ${relative}`;
    }
  } catch {
    return `${local}, ${relative}`; // a zone this browser does not know: the local time is still right
  }
  return `${local} (${zoned} in ${zone}), ${relative}`;
}

/** A file path that wraps only after a "/" (never inside a name, even at a "-"), as a path should. */
function PathText(props: { path: string }): JSX.Element {
  const parts = props.path.split('/');
  return (
    <span className="jp-mlops-path">
      {parts.map((part, i) => (
        <React.Fragment key={i}>
          <span className="jp-mlops-path-part">{i < parts.length - 1 ? `${part}/` : part}</span>
          {i < parts.length - 1 && <wbr />}
        </React.Fragment>
      ))}
    </span>
  );
}

export function formatDuration(seconds: number | null): string {
  if (seconds === null || seconds === undefined || !isFinite(seconds)) {
    return '';
  }
  if (seconds < 60) {
    return `${seconds.toFixed(seconds < 10 ? 1 : 0)} s`;
  }
  const m = Math.floor(seconds / 60);
  if (m < 60) {
    return `${m} min ${Math.round(seconds % 60)} s`;
  }
  return `${Math.floor(m / 60)} h ${m % 60} min`;
}

/** Who started a job, in a few words: its schedule, "run now", "pipeline", "sweep" or "manual". */
export function originLabel(job: IJobRow): string {
  const attempt = job.attempt && job.attempt > 1 ? ` · attempt ${job.attempt}` : '';
  switch (job.origin) {
    case 'schedule':
      return `${job.schedule}${attempt}`;
    case 'manual':
      return `${job.schedule} · run now${attempt}`;
    case 'pipeline':
    case 'sweep':
      return job.origin;
    default:
      return 'manual';
  }
}

function StatusBadge(props: { status: string; title?: string }): JSX.Element {
  return (
    <span className="jp-mlops-status" data-status={props.status.toUpperCase()} title={props.title}>
      {props.status.toLowerCase()}
    </span>
  );
}

function SchedulerNote(props: { model: JobsModel }): JSX.Element | null {
  const info = props.model.scheduler;
  if (!info) {
    return null;
  }
  if (info.error) {
    return (
      <div className="jp-mlops-scheduler-note jp-mlops-scheduler-error" role="alert">
        {info.error}
      </div>
    );
  }
  return info.in_server ? (
    <div className="jp-mlops-scheduler-note">Due jobs run in this Jupyter server.</div>
  ) : (
    <div className="jp-mlops-scheduler-note jp-mlops-muted">
      This server does not run due jobs: start <code>mlops-nb scheduler</code>, or set{' '}
      <code>c.MlopsNbApp.scheduler = True</code> and restart JupyterLab.
    </div>
  );
}

function ScheduleItem(props: { schedule: ISchedule; model: JobsModel; actions: IJobActions }): JSX.Element {
  const { schedule: s, model, actions } = props;
  const busy = model.busy(s.name);
  const next = s.next_run;
  return (
    <li className="jp-mlops-schedule" data-schedule={s.name} data-paused={String(s.paused)}>
      <div className="jp-mlops-schedule-head">
        <span className="jp-mlops-schedule-name">{s.name}</span>
        {s.paused && <span className="jp-mlops-badge jp-mlops-badge-small">paused</span>}
        {s.last_state && <StatusBadge status={s.last_state} title="the last job's state" />}
      </div>
      <div className="jp-mlops-schedule-target">
        runs <PathText path={s.target} />
      </div>
      <div className="jp-mlops-schedule-when">
        <code title="cron expression">{s.cron}</code> in {s.timezone} time
      </div>
      <div className="jp-mlops-next" title={next ? `${next} (UTC)` : undefined}>
        {s.paused || !next ? 'next run: none while paused' : `next run: ${nextRunText(next, s.timezone)}`}
      </div>
      <div className="jp-mlops-schedule-actions">
        <ToolbarButtonComponent
          icon={runIcon}
          label={busy === 'run' ? 'Starting…' : 'Run now'}
          tooltip={`Run ${s.target} now, in this server`}
          enabled={!busy}
          onClick={() => actions.runNow(s.name)}
        />
        <ToolbarButtonComponent
          icon={s.paused ? runIcon : stopIcon}
          label={busy === 'pause' ? 'Pausing…' : busy === 'resume' ? 'Resuming…' : s.paused ? 'Resume' : 'Pause'}
          tooltip={s.paused ? `Fire ${s.name} again from its next occurrence` : `Stop firing ${s.name}`}
          enabled={!busy}
          onClick={() => actions.setPaused(s.name, !s.paused)}
        />
      </div>
    </li>
  );
}

function JobItem(props: { job: IJobRow; actions: IJobActions }): JSX.Element {
  const { job, actions } = props;
  const label = job.notebook || job.name || job.schedule || 'job';
  // A scheduled pipeline's row is its pipeline run: its steps are the jobs to open.
  const canOpen = !!job.run_id && !/\.ya?ml$/i.test(job.notebook || '');
  return (
    <li className="jp-mlops-job" data-run-id={job.run_id ?? ''} data-status={job.status}>
      <div className="jp-mlops-job-head">
        <StatusBadge status={job.status} title={job.state ? `scheduler: ${job.state}` : undefined} />
        {canOpen ? (
          <button
            className="jp-mlops-link jp-mlops-job-name"
            title={`Open the executed notebook of run ${job.run_id}`}
            onClick={() => actions.openJobNotebook(job)}
          >
            <PathText path={label} />
          </button>
        ) : (
          <span className="jp-mlops-job-name">
            <PathText path={label} />
          </span>
        )}
        <span className="jp-mlops-time" title={job.start ?? ''}>
          {formatTime(job.start)}
        </span>
      </div>
      <div className="jp-mlops-job-meta">
        <span className="jp-mlops-origin">{originLabel(job)}</span>
        {job.duration_s !== null && <span>{formatDuration(job.duration_s)}</span>}
      </div>
      {job.error && (
        <div className="jp-mlops-job-error" title={job.error}>
          {job.error}
        </div>
      )}
    </li>
  );
}

/** The side panel's Jobs section: schedules (run now, pause, resume) and recent job runs. */
export class JobsView extends VDomRenderer<JobsModel> {
  constructor(model: JobsModel, private readonly actions: IJobActions) {
    super(model);
    this.addClass('jp-mlops-jobs');
  }

  protected render(): JSX.Element {
    const model = this.model;
    const retry = () => void model.refresh();
    return (
      <div className="jp-mlops-section-body">
        {model.loading && <div className="jp-mlops-loading">Loading schedules and jobs…</div>}
        <SchedulerNote model={model} />
        <h3 className="jp-mlops-subhead">Schedules</h3>
        {model.schedulesError ? (
          <ErrorState error={model.schedulesError} retryAt={model.retry.due} onRetry={retry} what="jobs" />
        ) : (
          !model.loading &&
          model.schedules.length === 0 && (
            <div className="jp-mlops-schedules-empty">
              <p>No schedules yet. Add one in a terminal:</p>
              <pre>mlops-nb schedule add nightly --cron "0 2 * * *" --timezone Europe/Paris notebooks/train.ipynb</pre>
              <p>It appears here with its next run; Run now starts it at once.</p>
            </div>
          )
        )}
        <ul className="jp-mlops-schedules">
          {model.schedules.map(s => (
            <ScheduleItem key={s.name} schedule={s} model={model} actions={this.actions} />
          ))}
        </ul>
        <h3 className="jp-mlops-subhead">Recent job runs</h3>
        {model.jobsError ? (
          <ErrorState error={model.jobsError} retryAt={model.retry.due} onRetry={retry} what="jobs" />
        ) : (
          !model.loading &&
          model.jobs.length === 0 && (
            <div className="jp-mlops-jobs-empty">
              No job runs yet: Run now on a schedule, or <code>mlops-nb run NOTEBOOK</code> in a terminal.
            </div>
          )
        )}
        <ul className="jp-mlops-job-list">
          {model.jobs.map(j => (
            <JobItem key={j.run_id ?? `job-${j.job_id}`} job={j} actions={this.actions} />
          ))}
        </ul>
      </div>
    );
  }
}
