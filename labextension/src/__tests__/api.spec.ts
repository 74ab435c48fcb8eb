import { ApiError, fetchModels, fetchVersions, promote, removeAlias, requestAPI, setAlias } from '../api';
import { apiError, fakeServer } from './fakeServer';

/** The error `promise` rejects with. */
async function failure(promise: Promise<unknown>): Promise<ApiError> {
  try {
    await promise;
  } catch (error) {
    expect(error).toBeInstanceOf(ApiError);
    return error as ApiError;
  }
  throw new Error('the request did not fail');
}

describe('requestAPI', () => {
  it('returns the JSON of a successful answer', async () => {
    const server = fakeServer(() => ({ json: { models: [], next_page_token: null } }));
    await expect(requestAPI('models')).resolves.toEqual({ models: [], next_page_token: null });
    expect(server.calls).toEqual(['GET models']);
  });

  it('returns null for an empty answer', async () => {
    fakeServer(() => ({ status: 200, text: '' }));
    await expect(requestAPI('models')).resolves.toBeNull();
  });

  it.each([
    [400, 'bad-input'],
    [404, 'not-found'],
    [409, 'refused'],
    [503, 'unreachable'],
    [500, 'other']
  ])('types an answer of %i from the server extension as %s, with its message', async (status, kind) => {
    fakeServer(() => apiError(status, `what went wrong (${status})`));
    const error = await failure(requestAPI('models/m'));
    expect(error.kind).toBe(kind);
    expect(error.status).toBe(status);
    expect(error.message).toBe(`what went wrong (${status})`);
  });

  it('says the server extension is missing when a 404 is not ours', async () => {
    fakeServer(() => ({ status: 404, text: '<html>404: Not Found</html>', statusText: 'Not Found' }));
    const error = await failure(requestAPI('models'));
    expect(error.kind).toBe('missing-extension');
    expect(error.status).toBe(404);
    expect(error.message).toContain("mlops-nb's server extension is not running in this Jupyter server");
    expect(error.message).toContain('jupyter server extension list');
  });

  it("uses Jupyter's own message, then the status text, for an answer not from the extension", async () => {
    fakeServer(() => ({ status: 403, json: { message: 'Forbidden: no token' } }));
    expect((await failure(requestAPI('models'))).message).toBe('Forbidden: no token');
    fakeServer(() => ({ status: 502, text: 'not json', statusText: 'Bad Gateway' }));
    const error = await failure(requestAPI('models'));
    expect([error.kind, error.status, error.message]).toEqual(['other', 502, 'Bad Gateway']);
    fakeServer(() => ({ status: 500, text: '' }));
    expect((await failure(requestAPI('models'))).message).toBe('HTTP 500');
  });

  it('says the Jupyter server cannot be reached when the request never gets an answer', async () => {
    fakeServer(() => 'network-down');
    const error = await failure(requestAPI('models'));
    expect(error.kind).toBe('unreachable');
    expect(error.status).toBe(0);
    expect(error.message).toMatch(/^Cannot reach the Jupyter server: /);
  });
});

describe('ApiError.from', () => {
  it('keeps an ApiError and wraps anything else as "other"', () => {
    const typed = new ApiError('gone', 404, 'not-found');
    expect(ApiError.from(typed)).toBe(typed);
    const wrapped = ApiError.from(new Error('boom'));
    expect([wrapped.message, wrapped.status, wrapped.kind]).toEqual(['boom', 0, 'other']);
    expect(ApiError.from('plain text').message).toBe('plain text');
  });
});

describe('the registry calls', () => {
  it('pass the search, the page size and the page token', async () => {
    const server = fakeServer(() => ({ json: { models: [], versions: [], next_page_token: null } }));
    await fetchModels('', 25, null);
    await fetchModels('iris', 10, 'tok-2');
    await fetchVersions('my model', 10, null);
    await fetchVersions('my model', 10, 'v-tok');
    expect(server.calls).toEqual([
      'GET models?page_size=25&order=name',
      'GET models?page_size=10&order=name&q=iris&page_token=tok-2',
      'GET models/my%20model/versions?page_size=10',
      'GET models/my%20model/versions?page_size=10&page_token=v-tok'
    ]);
  });

  it('change aliases and promote with the verbs and bodies the API documents', async () => {
    const server = fakeServer(() => ({ json: {} }));
    await setAlias('m', 'champion', '3');
    await removeAlias('m', 'old');
    await promote('m', { metric: 'acc', from: 'challenger', to: 'champion', min_delta: 0, lower_is_better: false });
    expect(server.calls).toEqual([
      'PUT models/m/aliases/champion',
      'DELETE models/m/aliases/old',
      'POST models/m/promotions'
    ]);
    expect(server.bodies).toEqual([
      { version: '3', why: 'set in the JupyterLab registry panel' },
      { metric: 'acc', from: 'challenger', to: 'champion', min_delta: 0, lower_is_better: false }
    ]);
  });
});
