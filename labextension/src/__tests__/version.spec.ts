import { VersionDetailModel } from '../model';
import { IVersionDetail } from '../tokens';
import { apiError, fakeServer } from './fakeServer';

const DETAIL: IVersionDetail = {
  name: 'iris',
  version: '3',
  aliases: ['champion'],
  description: '',
  created: null,
  run_id: 'abc',
  params: { n_estimators: '100' },
  metrics: { test_accuracy: 0.97 },
  signature: null,
  lineage: { notebook: 'train.ipynb' },
  audit: [],
  load: 'mnb.load("models:/iris@champion")'
};

/** Resolves once `model` has emitted `stateChanged`. */
function changed(model: VersionDetailModel): Promise<void> {
  return new Promise(resolve => model.stateChanged.connect(() => resolve()));
}

describe('VersionDetailModel', () => {
  it('reads the version from the server when created, and again on reload', async () => {
    let aliases = ['champion'];
    const server = fakeServer(() => ({ json: { ...DETAIL, aliases } }));
    const model = new VersionDetailModel('iris', '3');
    expect([model.detail, model.error]).toEqual([null, null]);
    await changed(model);
    expect(model.detail?.aliases).toEqual(['champion']);
    aliases = [];
    await model.reload();
    expect(model.detail?.aliases).toEqual([]);
    expect(server.calls).toEqual(['GET models/iris/versions/3', 'GET models/iris/versions/3']);
    model.dispose();
  });

  it('says why the version cannot be read', async () => {
    fakeServer(() => apiError(404, 'Model version iris v9 does not exist.'));
    const model = new VersionDetailModel('iris', '9');
    await changed(model);
    expect([model.error?.kind, model.error?.message]).toEqual(['not-found', 'Model version iris v9 does not exist.']);
    fakeServer(() => 'network-down');
    await model.reload();
    expect(model.error?.kind).toBe('unreachable');
    model.dispose();
  });
});
