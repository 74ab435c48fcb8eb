import { deploymentState } from '../components/DeploymentItem';
import { formatLatency, formatRate } from '../format';
import { DEPLOYMENTS_REFRESH_MS, DeploymentsModel, NO_DEPLOYMENTS_REFRESH_MS } from '../model';
import { IDeployment } from '../tokens';
import { apiError, fakeServer, IFakeServer } from './fakeServer';

function deployment(name: string, port: number, overrides: Partial<IDeployment> = {}): IDeployment {
  return {
    id: `host-${port}`,
    url: `http://127.0.0.1:${port}`,
    port,
    model: `models:/${name}@champion`,
    name,
    alias: 'champion',
    version: '3',
    started: '2026-12-01T09:00:00+00:00',
    reachable: true,
    error: null,
    status: 'ok',
    requests: 42,
    errors: 1,
    requests_per_second: 0.7,
    p50_ms: 3.24,
    p99_ms: 12.5,
    last_swap: { from: '2', to: '3', at: '2026-12-01T09:05:00+00:00', load_seconds: 1.2 },
    ...overrides
  };
}

/** The server extension with the given servers running; DELETE stops one (404 for an unknown id). */
function deploymentsServer(running: IDeployment[]): IFakeServer {
  return fakeServer((path, _query, request) => {
    if (path === 'deployments') {
      return { json: { deployments: running } };
    }
    const id = decodeURIComponent(path.replace(/^deployments\//, ''));
    const i = running.findIndex(d => d.id === id);
    if (request.method === 'DELETE' && i >= 0) {
      const [stopped] = running.splice(i, 1);
      return { json: stopped };
    }
    return apiError(404, `no model server of this project has the id "${id}"; running: none`);
  });
}

describe('DeploymentsModel', () => {
  let model: DeploymentsModel;

  beforeEach(() => {
    model = new DeploymentsModel();
  });

  afterEach(() => model.dispose());

  it('lists the servers in a stable order, with what each serves and its numbers', async () => {
    const server = deploymentsServer([deployment('wine', 5002), deployment('cancer', 5001)]);
    expect(model.deployments).toEqual([]);
    await model.refresh();
    expect(model.deployments.map(d => [d.name, d.alias, d.version, d.requests_per_second])).toEqual([
      ['cancer', 'champion', '3', 0.7],
      ['wine', 'champion', '3', 0.7]
    ]);
    expect([model.loading, model.error, model.refreshedAt instanceof Date]).toEqual([false, null, true]);
    expect(server.calls).toEqual(['GET deployments']);
  });

  it('keeps a server that does not answer, as not answering', async () => {
    const down = deployment('cancer', 5001, {
      reachable: false,
      error: 'timed out',
      status: null,
      requests: null,
      requests_per_second: null,
      p50_ms: null,
      p99_ms: null
    });
    deploymentsServer([down]);
    await model.refresh();
    expect(model.deployments).toHaveLength(1);
    expect(deploymentState(model.deployments[0])).toBe('not answering');
    expect(deploymentState(deployment('wine', 1))).toBe('serving');
    expect(deploymentState(deployment('wine', 1, { status: 'degraded' }))).toBe('degraded');
  });

  it('says what went wrong, keeps what it showed, and throws when refreshing quietly', async () => {
    deploymentsServer([deployment('cancer', 5001)]);
    await model.refresh();
    fakeServer(() => ({ status: 404, text: 'Not Found' }));
    await expect(model.refresh({ quiet: true })).rejects.toMatchObject({ kind: 'missing-extension' });
    expect(model.error?.kind).toBe('missing-extension');
    expect(model.deployments.map(d => d.id)).toEqual(['host-5001']);
    fakeServer(() => 'network-down');
    await model.refresh();
    expect(model.error?.kind).toBe('unreachable');
    deploymentsServer([]);
    await model.refresh();
    expect([model.error, model.deployments]).toEqual([null, []]);
  });

  it('marks a server as stopping until it has stopped, then shows what still runs', async () => {
    const server = deploymentsServer([deployment('cancer', 5001), deployment('wine', 5002)]);
    await model.refresh();
    const stopping = model.stop('host-5001');
    expect(model.stopping('host-5001')).toBe(true);
    expect(model.stopping('host-5002')).toBe(false);
    await expect(stopping).resolves.toMatchObject({ id: 'host-5001', url: 'http://127.0.0.1:5001' });
    expect(model.stopping('host-5001')).toBe(false);
    expect(model.deployments.map(d => d.id)).toEqual(['host-5002']);

    const error = await model.stop('gone host/1').catch(e => e);
    expect([error.kind, error.message]).toEqual([
      'not-found',
      'no model server of this project has the id "gone host/1"; running: none'
    ]);
    expect(model.stopping('gone host/1')).toBe(false);
    expect(server.calls.filter(c => c.startsWith('DELETE'))).toEqual([
      'DELETE deployments/host-5001',
      'DELETE deployments/gone%20host%2F1'
    ]);
  });

  it('re-reads every few seconds while shown and a server runs, less often with none, never while hidden', async () => {
    jest.useFakeTimers();
    const polled = new DeploymentsModel();
    try {
      const running: IDeployment[] = [];
      const server = deploymentsServer(running);
      await jest.advanceTimersByTimeAsync(2 * NO_DEPLOYMENTS_REFRESH_MS);
      expect(server.calls).toEqual([]); // not shown yet

      polled.setVisible(true);
      await jest.advanceTimersByTimeAsync(4 * NO_DEPLOYMENTS_REFRESH_MS);
      expect(server.calls).toEqual(Array(4).fill('GET deployments')); // none running: the slower pace

      running.push(deployment('cancer', 5001)); // a server starts
      await jest.advanceTimersByTimeAsync(NO_DEPLOYMENTS_REFRESH_MS);
      expect(polled.deployments.map(d => d.id)).toEqual(['host-5001']);
      const seen = server.calls.length;
      await jest.advanceTimersByTimeAsync(6 * DEPLOYMENTS_REFRESH_MS);
      expect(server.calls.length - seen).toBe(6); // one running: every few seconds

      polled.setVisible(false);
      const hidden = server.calls.length;
      await jest.advanceTimersByTimeAsync(4 * NO_DEPLOYMENTS_REFRESH_MS);
      expect(server.calls.length).toBe(hidden);
    } finally {
      polled.dispose();
      jest.useRealTimers();
    }
  });
});

describe('numbers of a deployment', () => {
  it('writes latencies and rates to a few figures', () => {
    expect([formatLatency(3.24), formatLatency(0.5), formatLatency(123.4), formatLatency(2345)]).toEqual([
      '3.2 ms',
      '0.5 ms',
      '123 ms',
      '2.35 s'
    ]);
    expect([formatLatency(null), formatRate(undefined)]).toEqual(['—', '—']);
    expect([formatRate(0), formatRate(0.05), formatRate(12.34), formatRate(456.7)]).toEqual([
      '0/s',
      '0.05/s',
      '12/s',
      '457/s'
    ]);
  });
});
