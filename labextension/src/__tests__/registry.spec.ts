import { RegistryModel, RETRY_MAX_MS } from '../model';
import { IModelRow, IVersionRow } from '../tokens';
import { Answer, apiError, fakeServer, IFakeServer } from './fakeServer';

const NAMES = ['alpha', 'beta', 'gamma', 'delta', 'epsilon'];

function modelRow(name: string, aliases: { [alias: string]: string } = {}): IModelRow {
  return { name, latest_version: '2', aliases, updated: null, description: '' };
}

function versionRow(name: string, version: number): IVersionRow {
  return { name, version: String(version), aliases: null, run_id: null, created: null, notebook: '', metrics: {} };
}

/** The registry as the server extension pages it: `page_token` is the index of the page's first model. */
function registry(path: string, query: URLSearchParams): Answer {
  if (path === 'models') {
    const size = Number(query.get('page_size'));
    const start = Number(query.get('page_token') ?? 0);
    const names = NAMES.filter(n => n.includes(query.get('q') ?? ''));
    const next = start + size < names.length ? String(start + size) : null;
    return { json: { models: names.slice(start, start + size).map(n => modelRow(n)), next_page_token: next } };
  }
  const versions = path.match(/^models\/([^/]+)\/versions$/);
  if (versions) {
    // Five versions, newest first, `page_size` at a time.
    const size = Number(query.get('page_size'));
    const start = Number(query.get('page_token') ?? 0);
    const all = [5, 4, 3, 2, 1].map(v => versionRow(versions[1], v));
    const next = start + size < all.length ? String(start + size) : null;
    return { json: { versions: all.slice(start, start + size), next_page_token: next } };
  }
  if (path === 'models/alpha') {
    return { json: { name: 'alpha', aliases: { champion: '5' }, versions: [], next_page_token: null } };
  }
  return apiError(404, `no route ${path}`);
}

const STORE_DOWN = apiError(503, 'cannot reach the tracking server at http://127.0.0.1:5000');

function shownNames(model: RegistryModel): string[] {
  return model.models.map(m => m.name);
}

describe('RegistryModel paging', () => {
  let server: IFakeServer;
  let model: RegistryModel;

  beforeEach(() => {
    server = fakeServer(registry);
    model = new RegistryModel({ versionsPageSize: 2 });
    model.configure({ pageSize: 2, autoRefreshSeconds: 0 });
  });

  afterEach(() => model.dispose());

  it('walks forward with the next page token and back to the first page', async () => {
    await model.search('');
    expect(shownNames(model)).toEqual(['alpha', 'beta']);
    expect([model.pageIndex, model.hasPrevious, model.hasNext]).toEqual([0, false, true]);

    await model.nextPage();
    expect(shownNames(model)).toEqual(['gamma', 'delta']);
    await model.nextPage();
    expect(shownNames(model)).toEqual(['epsilon']);
    expect([model.pageIndex, model.hasPrevious, model.hasNext]).toEqual([2, true, false]);
    await model.nextPage(); // no next page: nothing asked
    expect(server.calls.length).toBe(3);

    await model.previousPage();
    expect(shownNames(model)).toEqual(['gamma', 'delta']);
    await model.previousPage();
    expect(shownNames(model)).toEqual(['alpha', 'beta']);
    expect(model.hasPrevious).toBe(false);
    expect(server.calls).toEqual([
      'GET models?page_size=2&order=name',
      'GET models?page_size=2&order=name&page_token=2',
      'GET models?page_size=2&order=name&page_token=4',
      'GET models?page_size=2&order=name&page_token=2',
      'GET models?page_size=2&order=name'
    ]);
  });

  it('starts again from the first page on a new search', async () => {
    await model.search('');
    await model.nextPage();
    await model.search('  l ');
    expect(model.query).toBe('l');
    expect(shownNames(model)).toEqual(['alpha', 'delta']);
    expect(model.pageIndex).toBe(0);
    expect(server.calls[2]).toBe('GET models?page_size=2&order=name&q=l');
  });

  it('reloads from the first page when the page size changes', async () => {
    model.setVisible(true); // started: a new page size searches again
    await Promise.resolve();
    await model.nextPage();
    model.configure({ pageSize: 3, autoRefreshSeconds: 0 });
    await new Promise(resolve => setTimeout(resolve));
    expect(model.pageIndex).toBe(0);
    expect(shownNames(model)).toEqual(['alpha', 'beta', 'gamma']);
  });

  it('pages through a model’s versions and keeps them shown on refresh', async () => {
    await model.search('');
    await model.toggle('beta');
    expect(model.expanded('beta')!.versions.map(v => v.version)).toEqual(['5', '4']);
    await model.moreVersions('beta');
    const entry = model.expanded('beta')!;
    expect(entry.versions.map(v => v.version)).toEqual(['5', '4', '3', '2']);
    expect(entry.nextPageToken).toBe('4');
    await model.refresh();
    expect(model.expanded('beta')!.versions.map(v => v.version)).toEqual(['5', '4', '3', '2']);
    expect(server.calls).toContain('GET models/beta/versions?page_size=4');
    await model.toggle('beta');
    expect(model.expanded('beta')).toBeUndefined();
  });

  it('reads the aliases a version holds from its model’s row, and live from the server', async () => {
    server.route = () => ({
      json: { models: [modelRow('m', { champion: '3', b: '3', c: '1' })], next_page_token: null }
    });
    await model.search('');
    expect(model.aliasesOf('m', '3')).toEqual(['b', 'champion']);
    expect(model.aliasesOf('other', '3')).toEqual([]);
    server.route = registry;
    await expect(model.liveAliases('alpha')).resolves.toEqual({ champion: '5' });
    expect(server.calls[server.calls.length - 1]).toBe('GET models/alpha?page_size=1');
  });
});

describe('RegistryModel error states', () => {
  let model: RegistryModel;

  beforeEach(() => {
    model = new RegistryModel();
    model.configure({ pageSize: 2, autoRefreshSeconds: 0 });
  });

  afterEach(() => model.dispose());

  it.each([
    ['bad-input', apiError(400, 'page_size must be at most 1000')],
    ['unreachable', apiError(503, 'cannot reach the tracking server')],
    ['missing-extension', { status: 404, text: 'Not Found' } as Answer],
    ['unreachable', 'network-down' as Answer]
  ])('shows a failed search as a %s error, with no models', async (kind, answer) => {
    fakeServer(registry);
    await model.search('');
    fakeServer(() => answer);
    await model.search('x');
    expect(model.error?.kind).toBe(kind);
    expect(model.models).toEqual([]);
    expect(model.loading).toBe(false);
  });

  it('keeps what is shown when a quiet refresh fails, and throws so the poll backs off', async () => {
    const server = fakeServer(registry);
    await model.search('');
    server.route = () => STORE_DOWN;
    await expect(model.refresh({ quiet: true })).rejects.toMatchObject({ kind: 'unreachable' });
    expect(shownNames(model)).toEqual(['alpha', 'beta']);
    expect(model.error?.message).toContain('cannot reach the tracking server');
  });

  it('shows a model’s versions that cannot be read as that model’s error', async () => {
    const server = fakeServer(registry);
    await model.search('');
    server.route = () => apiError(404, 'Registered model gone does not exist.');
    await model.toggle('gone');
    const entry = model.expanded('gone')!;
    expect([entry.loading, entry.error?.kind, entry.error?.message]).toEqual([
      false,
      'not-found',
      'Registered model gone does not exist.'
    ]);
  });

  it('drops an answer that arrives after a newer search', async () => {
    let release: () => void = () => undefined;
    const slow = new Promise<void>(resolve => (release = resolve));
    const server = fakeServer(registry);
    const fetchNow = globalThis.fetch;
    globalThis.fetch = (async (request: Request) => {
      if (new URL(request.url).searchParams.get('q') === 'a') {
        await slow;
      }
      return fetchNow(request);
    }) as typeof fetch;
    const first = model.search('a');
    await model.search('gamma');
    release();
    await first;
    expect(shownNames(model)).toEqual(['gamma']);
    expect(server.calls.length).toBe(2);
  });
});

describe('RegistryModel retries an unreachable store', () => {
  let server: IFakeServer;
  let model: RegistryModel;

  beforeEach(() => {
    jest.useFakeTimers();
    server = fakeServer(() => STORE_DOWN);
    model = new RegistryModel();
    model.configure({ pageSize: 2, autoRefreshSeconds: 0 });
  });

  afterEach(() => {
    model.dispose();
    jest.useRealTimers();
  });

  /** When each retry is due, in ms after the first failure, over `span` ms. */
  async function retryTimes(span: number, step = 250): Promise<number[]> {
    const start = Date.now();
    const times: number[] = [];
    for (let t = 0; t <= span; t += step) {
      const due = model.retry.due?.getTime();
      if (due !== undefined && times[times.length - 1] !== due - start) {
        times.push(due - start);
      }
      await jest.advanceTimersByTimeAsync(step);
    }
    return times;
  }

  it('first after 5 s, then twice as long each time up to 30 s, while the panel is shown', async () => {
    model.setVisible(true);
    await jest.advanceTimersByTimeAsync(0);
    expect(model.error?.kind).toBe('unreachable');
    const times = await retryTimes(150_000);
    const waits = times.map((t, i) => t - (i ? times[i - 1] : 0));
    expect(waits.slice(0, 6)).toEqual([5_000, 10_000, 20_000, RETRY_MAX_MS, RETRY_MAX_MS, RETRY_MAX_MS]);
    // One request a retry, no more: a failed retry plans one next retry.
    expect(server.calls.length).toBe(1 + times.length - 1);
  });

  it('shows the models again and stops retrying once the store answers', async () => {
    model.setVisible(true);
    await jest.advanceTimersByTimeAsync(0);
    const due = model.retry.due!;
    expect(due.getTime() - Date.now()).toBe(5_000);
    server.route = registry;
    await jest.advanceTimersByTimeAsync(5_000);
    expect(model.error).toBeNull();
    expect(shownNames(model)).toEqual(['alpha', 'beta']);
    expect(model.retry.due).toBeNull();
    const asked = server.calls.length;
    await jest.advanceTimersByTimeAsync(120_000);
    expect(server.calls.length).toBe(asked);
  });

  it('waits while the panel is hidden and retries soon after it is shown again', async () => {
    model.setVisible(true);
    await jest.advanceTimersByTimeAsync(5_000); // first retry failed: next in 10 s
    expect(model.retry.due!.getTime() - Date.now()).toBe(10_000);
    model.setVisible(false);
    expect(model.retry.due).toBeNull();
    const asked = server.calls.length;
    await jest.advanceTimersByTimeAsync(60_000);
    expect(server.calls.length).toBe(asked);
    model.setVisible(true);
    expect(model.retry.due!.getTime() - Date.now()).toBe(5_000); // back to the first wait
    await jest.advanceTimersByTimeAsync(5_000);
    expect(server.calls.length).toBe(asked + 1);
  });

  it('follows the retry setting, and 0 turns automatic retries off', async () => {
    model.retry.firstDelay = 1_000;
    model.setVisible(true);
    await jest.advanceTimersByTimeAsync(0);
    expect(model.retry.due!.getTime() - Date.now()).toBe(1_000);
    model.retry.firstDelay = 0;
    expect(model.retry.due).toBeNull();
    const asked = server.calls.length;
    await jest.advanceTimersByTimeAsync(60_000);
    expect(server.calls.length).toBe(asked);
    expect(model.error?.kind).toBe('unreachable'); // the Retry button still works
  });

  it('does not retry other errors', async () => {
    server.route = () => apiError(400, 'bad query');
    model.setVisible(true);
    await jest.advanceTimersByTimeAsync(0);
    expect(model.error?.kind).toBe('bad-input');
    expect(model.retry.due).toBeNull();
  });
});
