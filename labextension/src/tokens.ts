/**
 * Shared types: what the server extension's REST API answers (`/mlops-nb/api/`, see
 * mlops_nb/server/openapi.yaml), and what the views ask the plugin to do.
 */

// ---------------------------------------------------------------- registry

export interface IModelRow {
  name: string;
  latest_version: string | null;
  aliases: { [alias: string]: string };
  updated: string | null;
  description: string;
}

export interface IModelsPage {
  models: IModelRow[];
  next_page_token: string | null;
}

export interface IVersionRow {
  name: string;
  version: string;
  /** null from the versions endpoint: aliases live on the model. */
  aliases: string[] | null;
  run_id: string | null;
  created: string | null;
  notebook: string;
  metrics: { [key: string]: number };
}

export interface IVersionsPage {
  versions: IVersionRow[];
  next_page_token: string | null;
}

export interface IModelDetail extends IVersionsPage {
  name: string;
  description: string;
  tags: { [key: string]: string };
  aliases: { [alias: string]: string };
}

export interface IAuditEvent {
  action: string;
  alias: string;
  from_version: string | null;
  to_version: string | null;
  who: string;
  when: string;
  why: string;
}

export interface IVersionDetail {
  name: string;
  version: string;
  aliases: string[];
  description: string;
  created: string | null;
  run_id: string | null;
  params: { [key: string]: string };
  metrics: { [key: string]: number };
  signature: { inputs?: string; outputs?: string; params?: string } | null;
  lineage: { [key: string]: string };
  audit: IAuditEvent[];
  load: string;
}

export type INotebookSource =
  | { source: 'workspace'; path: string }
  | {
      source: 'snapshot';
      name: string;
      run_id: string;
      recorded_path: string | null;
      html: string;
    };

export interface IPromotion {
  name: string;
  to_alias: string;
  version: string;
  previous_version: string | null;
  metric: string;
  candidate_value: number | null;
  current_value: number | null;
  message: string;
  /** True when the alias is protected: nothing moved, the promotion waits for approval. */
  pending?: boolean;
}

// ---------------------------------------------------------------- monitoring and approvals

/** The verdicts of `mlops-nb monitor`. */
export type Verdict = 'healthy' | 'drift' | 'degraded' | 'insufficient data';

/** A version's last monitor verdict (its `mlops_nb.monitor.last` tag). */
export interface IMonitorVerdict {
  verdict: Verdict;
  reason?: string;
  /** The features that drifted. */
  drifted?: string[];
  when?: string;
  run_id?: string | null;
  rows?: number | null;
}

/** A served version's health: its last verdict and where its report is. */
export interface IMonitorHealth extends IMonitorVerdict {
  /** This Jupyter server's address of the run's HTML report (already under its base URL). */
  report_url: string | null;
}

/** A promotion of a protected alias that waits for a person, with its evidence. */
export interface IPendingApproval {
  name: string;
  /** The candidate version. */
  version: string;
  /** The protected alias it would take. */
  alias: string;
  /** The version holding the alias now; null when none does. */
  current_version: string | null;
  requested_by: string;
  requested_at: string;
  /** The guard's reason, as the audit trail will keep it. */
  why: string;
  /** The evidence in a few words. */
  summary?: string;
  evidence: {
    /** Per metric, the candidate's and the current holder's values. */
    metrics: { [metric: string]: { candidate?: number | null; current?: number | null } };
    comparison: string;
    /** The version holding the alias when the promotion was asked for. */
    compared_with?: string | null;
    /** The candidate's alias the promotion moved from. */
    from_alias?: string | null;
    /** The current holder's last monitor verdict; null when it was never monitored. */
    drift: IMonitorVerdict | null;
    lineage: { [key: string]: unknown };
  };
}

/** What an approval or a rejection did. */
export interface IApprovalDecision {
  decision: 'approved' | 'rejected';
  name: string;
  version: string;
  alias: string;
  /** The Jupyter user who decided. */
  who: string;
  reason: string;
  /** Approved: the version the alias left; rejected: the version keeping it. */
  previous_version: string | null;
  message: string;
}

// ---------------------------------------------------------------- schedules and jobs

export interface ISchedule {
  name: string;
  cron: string;
  timezone: string;
  /** Notebook or pipeline file, relative to the project root. */
  target: string;
  kind: 'notebook' | 'pipeline';
  params: { [key: string]: string };
  paused: boolean;
  missed: string;
  retries: number;
  timeout_s: number | null;
  webhook: string | null;
  notify_success: boolean;
  created: string;
  /** UTC; null while paused. */
  next_run: string | null;
  last_state: string | null;
}

export interface ISchedulerInfo {
  /** Whether this Jupyter server runs due jobs itself (`c.MlopsNbApp.scheduler = True`). */
  in_server: boolean;
  /** Why the in-server scheduler did not start, when it was asked to. */
  error?: string | null;
}

export interface ISchedules {
  schedules: ISchedule[];
  scheduler: ISchedulerInfo;
}

export interface IJobRecord {
  id: number;
  schedule: string;
  occurrence: string;
  trigger: 'schedule' | 'manual';
  attempt: number;
  state: string;
  started: string | null;
  finished: string | null;
  run_id: string | null;
  output: string | null;
  error: string | null;
}

/** Who started a job run. */
export type JobOrigin = 'schedule' | 'manual' | 'pipeline' | 'sweep' | 'run';

export interface IJobRow {
  run_id: string | null;
  name: string;
  experiment: string | null;
  notebook: string;
  /** MLflow's (RUNNING, FINISHED, FAILED, KILLED) or, before a run exists, the scheduler's. */
  status: string;
  start: string | null;
  end: string | null;
  duration_s: number | null;
  origin: JobOrigin;
  schedule: string | null;
  trigger: 'schedule' | 'manual' | null;
  attempt: number | null;
  job_id: number | null;
  state: string | null;
  parent_run_id: string | null;
  error: string | null;
}

// ---------------------------------------------------------------- deployments (model servers)

/** A server's last swap: the version it left, the one it serves now, when, and how long loading took. */
export interface ISwap {
  from: string | null;
  to: string;
  at: string;
  load_seconds: number;
}

/** A model server of the project: its announcement merged with its /health numbers (null while it does not answer). */
export interface IDeployment {
  /** `<hostname>-<port>`. */
  id: string;
  url: string;
  host?: string;
  port?: number;
  pid?: number;
  hostname?: string;
  /** What it serves: `models:/NAME@ALIAS`, `models:/NAME/VERSION`, `runs:/...` or a folder. */
  model: string;
  name?: string | null;
  alias?: string | null;
  version?: string | null;
  started?: string;
  auth?: boolean;
  alive?: boolean;
  /** Whether its /health answered within the server's short timeout. */
  reachable: boolean;
  /** Why it is not reachable, in one line. */
  error: string | null;
  status: 'ok' | 'loading' | 'degraded' | null;
  requests: number | null;
  errors: number | null;
  /** Over the last 60 s. */
  requests_per_second: number | null;
  p50_ms: number | null;
  p99_ms: number | null;
  swaps?: number | null;
  last_swap: ISwap | null;
  last_error?: { version: string; at: string; error: string } | null;
  /** The served version's last monitor verdict; null before its first monitor run. */
  health?: IMonitorHealth | null;
  /** Why the verdict could not be read, in one line. */
  health_error?: string | null;
}

// ---------------------------------------------------------------- what views ask for

/** What the registry views ask the plugin to do (dialogs, opening tabs). */
export interface IActions {
  openDetail(name: string, version: string): void;
  openNotebook(name: string, version: string): void;
  copySnippet(name: string, version: string, aliases: string[]): void;
  setAlias(name: string, version: string): void;
  removeAlias(name: string, alias: string, version: string): void;
  /** `metrics` ranked by `rankMetricNames` (metrics.ts): the first is the default to judge on. */
  promote(name: string, version: string, metrics: string[]): void;
}

/** What the Jobs section asks the plugin to do (feedback, opening tabs). */
export interface IJobActions {
  runNow(name: string): void;
  setPaused(name: string, paused: boolean): void;
  openJobNotebook(job: IJobRow): void;
}

/** What the Deployments section asks the plugin to do. */
export interface IDeploymentActions {
  /** Stop the server (after asking). */
  stop(deployment: IDeployment): void;
  /** Open the detail tab of the version a server serves. */
  openVersion(name: string, version: string): void;
}

/** What the Approvals section asks the plugin to do. */
export interface IApprovalActions {
  /** Approve or reject a pending promotion (the reason typed for it is in the model), then refresh. */
  decide(approval: IPendingApproval, decision: 'approve' | 'reject'): void;
  /** Open the detail tab of a version. */
  openVersion(name: string, version: string): void;
}

/** Another section of the panel that refreshes with the registry (same button, same poll). */
export interface IRefreshable {
  refresh(options?: { quiet?: boolean }): Promise<void>;
  setVisible(visible: boolean): void;
}
