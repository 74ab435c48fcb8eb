/**
 * The REST API of mlops-nb's server extension (`/mlops-nb/api/`), typed.
 *
 * Requests go through Jupyter's ServerConnection, so they carry the server's token or
 * cookie and XSRF header; nothing here talks to MLflow directly. Every failure is an
 * {@link ApiError} whose `kind` tells the panel which error state to show.
 */
import { URLExt } from '@jupyterlab/coreutils';
import { ServerConnection } from '@jupyterlab/services';

import {
  IApprovalDecision,
  IDeployment,
  IJobRecord,
  IJobRow,
  IModelDetail,
  IModelsPage,
  INotebookSource,
  IPendingApproval,
  IPromotion,
  ISchedule,
  ISchedules,
  IVersionDetail,
  IVersionsPage
} from './tokens';

/**
 * What went wrong, so the panel can pick its error state: the server extension is
 * missing, the server or a store cannot be reached, the server refused the change, the
 * thing asked for does not exist, the request was wrong, or anything else.
 */
export type ApiErrorKind = 'missing-extension' | 'unreachable' | 'refused' | 'not-found' | 'bad-input' | 'other';

/** Why a request failed, in words a user can act on. */
export class ApiError extends Error {
  /**
   * @param status HTTP status (0 when the server could not be reached at all)
   * @param kind what went wrong, so the panel can pick its error state
   */
  constructor(
    message: string,
    readonly status: number,
    readonly kind: ApiErrorKind
  ) {
    super(message);
  }

  /** `error` as an ApiError: itself if it is one, else its message with kind `other`. */
  static from(error: unknown): ApiError {
    return error instanceof ApiError ? error : new ApiError(String((error as Error)?.message ?? error), 0, 'other');
  }
}

const MISSING_EXTENSION =
  "mlops-nb's server extension is not running in this Jupyter server, or is older than this panel. " +
  'Install the package in the environment that runs JupyterLab (pip install mlops-nb), ' +
  'check `jupyter server extension list` shows mlops_nb enabled, and restart JupyterLab.';

function kindOf(status: number): ApiErrorKind {
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

/** The JSON in `text`; null when there is none or it is not JSON. */
function parseJson(text: string): unknown {
  try {
    return text ? JSON.parse(text) : null;
  } catch {
    return null;
  }
}

/** A JSON object's string field, if it has one. */
function stringField(data: unknown, key: string): string | undefined {
  if (data && typeof data === 'object') {
    const value = (data as Record<string, unknown>)[key];
    return typeof value === 'string' ? value : undefined;
  }
  return undefined;
}

/** Call `/mlops-nb/api/<path>` and return its JSON, or throw an {@link ApiError}. */
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
    throw new ApiError(`Cannot reach the Jupyter server: ${(error as Error).message}`, 0, 'unreachable');
  }
  const text = await response.text();
  const data = parseJson(text);
  if (response.ok) {
    return data as T;
  }
  // Our handlers always answer {"error": ..., "status": ...}; anything else on a 404
  // means no handler is mounted at /mlops-nb/api at all.
  const ours = stringField(data, 'error');
  if (ours === undefined && response.status === 404) {
    throw new ApiError(MISSING_EXTENSION, 404, 'missing-extension');
  }
  const message = ours ?? (stringField(data, 'message') || response.statusText || `HTTP ${response.status}`);
  throw new ApiError(message, response.status, kindOf(response.status));
}

// ---------------------------------------------------------------- registry

const enc = encodeURIComponent;

export function fetchModels(query: string, pageSize: number, pageToken: string | null): Promise<IModelsPage> {
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

export function fetchVersions(name: string, pageSize: number, pageToken: string | null): Promise<IVersionsPage> {
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

export function setAlias(name: string, alias: string, version: string): Promise<{ previous_version: string | null }> {
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

// ---------------------------------------------------------------- approvals

/** The promotions of protected aliases waiting for a person, each with its evidence. */
export function fetchApprovals(): Promise<{ approvals: IPendingApproval[] }> {
  return requestAPI<{ approvals: IPendingApproval[] }>('approvals');
}

/** Approve (the alias moves) or reject (a reason is needed) a pending promotion, in the Jupyter user's name. */
export function decideApproval(
  name: string,
  version: string,
  alias: string,
  decision: 'approve' | 'reject',
  reason: string
): Promise<IApprovalDecision> {
  return requestAPI<IApprovalDecision>(`approvals/${enc(name)}/${enc(version)}/${enc(alias)}`, {
    method: 'POST',
    body: JSON.stringify({ decision, reason })
  });
}

// ---------------------------------------------------------------- schedules and jobs

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

// ---------------------------------------------------------------- deployments

/** The project's model servers, each with its live numbers (one short timeout at most). */
export function fetchDeployments(): Promise<{ deployments: IDeployment[] }> {
  return requestAPI<{ deployments: IDeployment[] }>('deployments');
}

/** Stop a model server of the project; resolves with its announcement once it has exited. */
export function stopDeployment(id: string): Promise<IDeployment> {
  return requestAPI<IDeployment>(`deployments/${enc(id)}`, { method: 'DELETE' });
}
