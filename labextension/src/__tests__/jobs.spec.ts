import { JobsModel } from '../model';
import { IJobRow, ISchedule } from '../tokens';
import { Answer, apiError, fakeServer, IFakeServer } from './fakeServer';

function schedule(name: string, paused = false): ISchedule {
  return {
    name,
    cron: '0 2 * * *',
    timezone: 'Europe/Paris',
    target: 'notebooks/train.ipynb',
    kind: 'notebook',
    params: {},
    paused,
    missed: 'skip',
    retries: 0,
    timeout_s: null,
    webhook: null,
    notify_success: false,
    created: '2026-11-30T10:00:00+00:00',
    next_run: paused ? null : '2026-12-02T01:00:00+00:00',
    last_state: null
  };
}

function job(runId: string, status: string): IJobRow {
  return {
    run_id: runId,
    name: 'train',
    experiment: 'default',
    notebook: 'notebooks/train.ipynb',
    status,
    start: '2026-12-01T09:00:00+00:00',
    end: null,
    duration_s: null,
    origin: 'manual',
    schedule: 'nightly',
    trigger: 'manual',
    attempt: 1,
    job_id: 1,
    state: null,
    parent_run_id: null,
    error: null
  };
}

/** A server with one schedule and the given jobs; `paused` follows PATCH requests. */
function jobsServer(jobs: IJobRow[], overrides: { schedules?: Answer; jobs?: Answer } = {}): IFakeServer {
  let paused = false;
  return fakeServer((path, query, request) => {
    if (path === 'schedules') {
      return (
        overrides.schedules ?? { json: { schedules: [schedule('nightly', paused)], scheduler: { in_server: true } } }
      );
    }
    if (path === 'jobs') {
      return overrides.jobs ?? { json: { jobs: jobs.slice(0, Number(query.get('limit'))) } };
    }
    if (path === 'schedules/nightly' && request.method === 'PATCH') {
      paused = !paused;
      return { json: schedule('nightly', paused) };
    }
    if (path === 'schedules/nightly/runs') {
      return { status: 201, json: { id: 7, schedule: 'nightly', state: 'RUNNING' } };
    }
    return apiError(404, `Schedule ${path.split('/')[1]} does not exist.`);
  });
}

describe('JobsModel', () => {
  let model: JobsModel;

  beforeEach(() => {
    model = new JobsModel({ jobsLimit: 5 });
  });

  afterEach(() => model.dispose());

  it('loads the schedules, whether this server runs them, and the recent jobs', async () => {
    const server = jobsServer([job('r1', 'FINISHED')]);
    await model.refresh();
    expect(model.schedules.map(s => s.name)).toEqual(['nightly']);
    expect(model.scheduler).toEqual({ in_server: true });
    expect(model.jobs.map(j => j.run_id)).toEqual(['r1']);
    expect([model.loading, model.schedulesError, model.jobsError, model.hasActiveJobs]).toEqual([
      false,
      null,
      null,
      false
    ]);
    expect(server.calls.sort()).toEqual(['GET jobs?limit=5', 'GET schedules']);
  });

  it('shows each list’s own error and keeps the other', async () => {
    jobsServer([job('r1', 'RUNNING')], { schedules: apiError(503, 'cannot open the scheduler database') });
    await model.refresh();
    expect(model.schedulesError?.kind).toBe('unreachable');
    expect(model.jobsError).toBeNull();
    expect(model.hasActiveJobs).toBe(true);

    jobsServer([], { jobs: { status: 404, text: 'Not Found' } });
    await expect(model.refresh({ quiet: true })).rejects.toMatchObject({ kind: 'missing-extension' });
    expect(model.schedulesError).toBeNull();
    expect(model.jobsError?.kind).toBe('missing-extension');
  });

  it('marks a schedule busy during an action and re-reads what is stored after it', async () => {
    const server = jobsServer([]);
    await model.refresh();
    const pausing = model.setPaused('nightly', true);
    expect(model.busy('nightly')).toBe('pause');
    const stored = await pausing;
    expect(stored.paused).toBe(true);
    expect(model.busy('nightly')).toBeUndefined();
    expect(model.schedules[0].paused).toBe(true);
    expect(server.bodies).toEqual([{ paused: true }]);

    await expect(model.runNow('nightly')).resolves.toMatchObject({ id: 7 });
    const error = await model.runNow('gone').catch(e => e);
    expect([error.kind, error.message]).toEqual(['not-found', 'Schedule gone does not exist.']);
    expect(model.busy('gone')).toBeUndefined();
    expect(server.calls.filter(c => c.startsWith('POST'))).toEqual([
      'POST schedules/nightly/runs',
      'POST schedules/gone/runs'
    ]);
  });

  it('retries by itself while a store cannot be reached, until both lists answer', async () => {
    jest.useFakeTimers();
    try {
      const retrying = new JobsModel();
      retrying.setVisible(true);
      const down = apiError(503, 'cannot reach the tracking server');
      jobsServer([], { jobs: down });
      await retrying.refresh();
      expect(retrying.retry.due!.getTime() - Date.now()).toBe(5_000);
      jobsServer([job('r2', 'FINISHED')]); // the store is back
      await jest.advanceTimersByTimeAsync(5_000);
      expect(retrying.jobsError).toBeNull();
      expect(retrying.jobs.map(j => j.run_id)).toEqual(['r2']);
      expect(retrying.retry.due).toBeNull();
      retrying.dispose();
    } finally {
      jest.useRealTimers();
    }
  });
});
