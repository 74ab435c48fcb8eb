/**
 * The registry REST API of mlops-nb's server extension (`/mlops-nb/api/`), typed.
 *
 * Requests go through Jupyter's ServerConnection, so they carry the server's token or
 * cookie and XSRF header; nothing here talks to MLflow directly.
 */
import { URLExt } from '@jupyterlab/coreutils';
import { ServerConnection } from '@jupyterlab/services';

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
}

/** Why a request failed, in words a user can act on. */
export class RegistryError extends Error {
  /**
   * @param status HTTP status (0 when the server could not be reached at all)
   * @param kind what went wrong, so the panel can pick its error state
   */
  constructor(
    message: string,
    readonly status: number,
    readonly kind: 'missing-extension' | 'unreachable' | 'refused' | 'not-found' | 'bad-input' | 'other'
  ) {
    super(message);
  }
}

const MISSING_EXTENSION =
  "mlops-nb's server extension is not running in this Jupyter server, or is older than this panel. " +
  'Install the package in the environment that runs JupyterLab (pip install mlops-nb), ' +
  'check `jupyter server extension list` shows mlops_nb enabled, and restart JupyterLab.';

function kindOf(status: number): RegistryError['kind'] {
  switch (status) {
    case 400:
      return 'bad-input';
    case 404:
      return 'not-found';
    case 409:
      return 'refused';
    case 503:
      return 'unreachable';
    default:
      return 'other';
  }
}

/** Call `/mlops-nb/api/<path>` and return its JSON, or throw a {@link RegistryError}. */
export async function requestAPI<T>(
  path: string,
  init: RequestInit = {},
  settings: ServerConnection.ISettings = ServerConnection.makeSettings()
): Promise<T> {
  const url = URLExt.join(settings.baseUrl, 'mlops-nb', 'api', path);
  let response: Response;
  try {
    response = await ServerConnection.makeRequest(url, init, settings);
  } catch (error) {
    throw new RegistryError(
      `Cannot reach the Jupyter server: ${(error as Error).message}`,
      0,
      'unreachable'
    );
  }
  const text = await response.text();
  let data: any = null;
  try {
    data = text ? JSON.parse(text) : null;
  } catch {
    data = null;
  }
  if (response.ok) {
    return data as T;
  }
  // Our handlers always answer {"error": ..., "status": ...}; anything else on a 404
  // means no handler is mounted at /mlops-nb/api at all.
  const ours = data && typeof data.error === 'string';
  if (!ours && response.status === 404) {
    throw new RegistryError(MISSING_EXTENSION, 404, 'missing-extension');
  }
  const message = ours
    ? data.error
    : (data && data.message) || response.statusText || `HTTP ${response.status}`;
  throw new RegistryError(message, response.status, kindOf(response.status));
}

const enc = encodeURIComponent;

export function fetchModels(
  query: string,
  pageSize: number,
  pageToken: string | null
): Promise<IModelsPage> {
  const params = new URLSearchParams({ page_size: String(pageSize), order: 'name' });
  if (query) {
    params.set('q', query);
  }
  if (pageToken) {
    params.set('page_token', pageToken);
  }
  return requestAPI<IModelsPage>(`models?${params}`);
}

export function fetchModel(name: string, pageSize: number): Promise<IModelDetail> {
  return requestAPI<IModelDetail>(`models/${enc(name)}?page_size=${pageSize}`);
}

export function fetchVersions(
  name: string,
  pageSize: number,
  pageToken: string | null
): Promise<IVersionsPage> {
  const params = new URLSearchParams({ page_size: String(pageSize) });
  if (pageToken) {
    params.set('page_token', pageToken);
  }
  return requestAPI<IVersionsPage>(`models/${enc(name)}/versions?${params}`);
}

export function fetchVersion(name: string, version: string): Promise<IVersionDetail> {
  return requestAPI<IVersionDetail>(`models/${enc(name)}/versions/${enc(version)}`);
}

export function fetchNotebook(name: string, version: string): Promise<INotebookSource> {
  return requestAPI<INotebookSource>(`models/${enc(name)}/versions/${enc(version)}/notebook`);
}

export function setAlias(
  name: string,
  alias: string,
  version: string
): Promise<{ previous_version: string | null }> {
  return requestAPI(`models/${enc(name)}/aliases/${enc(alias)}`, {
    method: 'PUT',
    body: JSON.stringify({ version, why: 'set in the JupyterLab registry panel' })
  });
}

export function removeAlias(name: string, alias: string): Promise<{ removed_from_version: string }> {
  return requestAPI(`models/${enc(name)}/aliases/${enc(alias)}`, { method: 'DELETE' });
}

export function promote(
  name: string,
  body: { metric: string; from: string; to: string; min_delta: number; lower_is_better: boolean }
): Promise<IPromotion> {
  return requestAPI<IPromotion>(`models/${enc(name)}/promotions`, {
    method: 'POST',
    body: JSON.stringify(body)
  });
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

export function fetchSchedules(): Promise<ISchedules> {
  return requestAPI<ISchedules>('schedules');
}

export function setPaused(name: string, paused: boolean): Promise<ISchedule> {
  return requestAPI<ISchedule>(`schedules/${enc(name)}`, {
    method: 'PATCH',
    body: JSON.stringify({ paused })
  });
}

/** Start the schedule's target now, in the server; resolves with the job's record at once. */
export function runNow(name: string): Promise<IJobRecord> {
  return requestAPI<IJobRecord>(`schedules/${enc(name)}/runs`, { method: 'POST', body: '{}' });
}

export function fetchJobs(limit: number): Promise<{ jobs: IJobRow[] }> {
  return requestAPI<{ jobs: IJobRow[] }>(`jobs?limit=${limit}`);
}

export function fetchJobNotebook(runId: string): Promise<INotebookSource> {
  return requestAPI<INotebookSource>(`jobs/${enc(runId)}/notebook`);
}
