import { driftSummary, healthLabel } from '../health';
import { ApprovalsModel, approvalKey, lineageParts, metricComparisons } from '../model';
import { IApprovalDecision, IPendingApproval } from '../tokens';
import { apiError, fakeServer, IFakeServer } from './fakeServer';

function pending(version: string, alias: string, overrides: Partial<IPendingApproval> = {}): IPendingApproval {
  return {
    name: 'cancer',
    version,
    alias,
    current_version: '1',
    requested_by: 'pipeline',
    requested_at: `2026-12-01T09:0${version}:00+00:00`,
    why: 'promoted from @challenger: accuracy 0.95 vs 0.9 (higher is better)',
    evidence: {
      metrics: { accuracy: { candidate: 0.95, current: 0.9 }, f1: { candidate: 0.8, current: null } },
      comparison: 'accuracy 0.95 vs 0.9 (higher is better)',
      drift: { verdict: 'drift', drifted: ['radius', 'texture'], when: '2026-12-01T08:00:00+00:00', run_id: 'ab12' },
      lineage: {
        'mlops_nb.notebook': 'train.ipynb',
        'mlops_nb.git.commit': '0123456789abcdef',
        'mlops_nb.run_id': 'fe98'
      }
    },
    ...overrides
  };
}

/**
 * The server extension holding `waiting`: GET lists them; POST approves or rejects one
 * (a reject without a reason is a 400, as the server says; an unknown one a 404).
 */
function approvalsServer(waiting: IPendingApproval[]): IFakeServer {
  return fakeServer((path, _query, request) => {
    if (path === 'approvals') {
      return { json: { approvals: waiting } };
    }
    const [, name, version, alias] = path.split('/').map(decodeURIComponent);
    const i = waiting.findIndex(a => a.name === name && a.version === version && a.alias === alias);
    if (request.method !== 'POST' || i < 0) {
      return apiError(404, `no promotion of ${name} v${version} to @${alias} waits for approval`);
    }
    const [done] = waiting.splice(i, 1);
    return {
      json: {
        decision: 'approved',
        name,
        version,
        alias,
        who: 'alice',
        reason: '',
        previous_version: done.current_version,
        message: `${name} v${version} is now @${alias}`
      }
    };
  });
}

describe('ApprovalsModel', () => {
  let model: ApprovalsModel;

  beforeEach(() => {
    model = new ApprovalsModel();
  });

  afterEach(() => model.dispose());

  it('lists pending approvals, the longest waiting first', async () => {
    const server = approvalsServer([pending('3', 'champion'), pending('2', 'prod')]);
    expect([model.approvals, model.loading]).toEqual([[], false]);
    await model.refresh();
    expect(model.approvals.map(approvalKey)).toEqual(['cancer/2/prod', 'cancer/3/champion']);
    expect([model.error, model.refreshedAt instanceof Date]).toEqual([null, true]);
    expect(server.calls).toEqual(['GET approvals']);
  });

  it('keeps a reason for each request, and rejects only with one', async () => {
    const server = approvalsServer([pending('2', 'champion')]);
    await model.refresh();
    const [request] = model.approvals;
    const key = approvalKey(request);
    expect([model.reason(key), model.canReject(key)]).toEqual(['', false]);
    model.setReason(key, '   ');
    expect(model.canReject(key)).toBe(false);
    const refused = await model.decide(request, 'reject').catch(e => e);
    expect([refused.kind, refused.message]).toEqual([
      'bad-input',
      'Give a reason to reject cancer v2 for @champion: it goes in the audit trail.'
    ]);
    expect(server.calls).toEqual(['GET approvals']); // nothing was sent
    model.setReason(key, 'drifts on new data');
    expect(model.canReject(key)).toBe(true);
    expect(model.reason('cancer/9/champion')).toBe('');
  });

  it('approves with the reason typed, says so, forgets the reason and re-reads the list', async () => {
    const server = approvalsServer([pending('2', 'champion'), pending('3', 'prod')]);
    await model.refresh();
    const request = model.approvals[0];
    model.setReason(approvalKey(request), ' looks right ');
    const decided: IApprovalDecision[] = [];
    model.decided.connect((_, done) => decided.push(done));
    const deciding = model.decide(request, 'approve');
    expect(model.deciding('cancer/2/champion')).toBe(true);
    expect(model.canReject('cancer/2/champion')).toBe(false);
    await expect(deciding).resolves.toMatchObject({ decision: 'approved', previous_version: '1' });
    expect(server.calls).toEqual(['GET approvals', 'POST approvals/cancer/2/champion', 'GET approvals']);
    expect(server.bodies).toEqual([{ decision: 'approve', reason: 'looks right' }]);
    expect(decided.map(d => d.version)).toEqual(['2']);
    expect([model.deciding('cancer/2/champion'), model.reason('cancer/2/champion')]).toEqual([false, '']);
    expect(model.approvals.map(approvalKey)).toEqual(['cancer/3/prod']);
  });

  it('says why a decision failed, sends no signal, and drops a request decided elsewhere', async () => {
    const waiting = [pending('2', 'champion', { name: 'a b/c' })];
    const server = approvalsServer(waiting);
    await model.refresh();
    const request = model.approvals[0];
    model.setReason(approvalKey(request), 'no');
    waiting.length = 0; // decided from the command line meanwhile
    const decided: IApprovalDecision[] = [];
    model.decided.connect((_, done) => decided.push(done));
    const error = await model.decide(request, 'reject').catch(e => e);
    expect([error.kind, error.status]).toEqual(['not-found', 404]);
    expect(server.calls[1]).toBe('POST approvals/a%20b%2Fc/2/champion');
    expect(decided).toEqual([]);
    expect(model.approvals).toEqual([]);
    expect(model.reason(approvalKey(request))).toBe(''); // its request is gone
  });

  it('says what went wrong and throws when refreshing quietly', async () => {
    fakeServer(() => ({ status: 404, text: 'Not Found' }));
    await expect(model.refresh({ quiet: true })).rejects.toMatchObject({ kind: 'missing-extension' });
    fakeServer(() => apiError(503, 'the store cannot be reached'));
    await model.refresh();
    expect(model.error?.kind).toBe('unreachable');
  });
});

describe('the evidence of a pending approval', () => {
  it('compares each metric, the one judged on first, with the change', () => {
    const rows = metricComparisons(pending('2', 'champion'));
    expect(rows.map(r => [r.metric, r.candidate, r.current])).toEqual([
      ['accuracy', 0.95, 0.9],
      ['f1', 0.8, null]
    ]);
    expect(rows[0].delta).toBeCloseTo(0.05, 12);
    expect(rows[1].delta).toBeNull();
  });

  it('names the notebook, commit and run of the candidate', () => {
    expect(lineageParts(pending('2', 'champion').evidence.lineage)).toEqual([
      ['notebook', 'train.ipynb'],
      ['commit', '01234567'],
      ['run', 'fe98']
    ]);
    expect(lineageParts({ notebook: 'a.ipynb', 'git.dirty': 'true', 'git.commit': 'abc', params: { a: 1 } })).toEqual([
      ['notebook', 'a.ipynb'],
      ['commit', 'abc (uncommitted changes)']
    ]);
    expect(lineageParts(null)).toEqual([]);
  });

  it('words a monitor verdict', () => {
    const drift = pending('2', 'champion').evidence.drift;
    expect([healthLabel(drift), driftSummary(drift)]).toEqual(['drift', 'drift: radius, texture drifted']);
    expect([healthLabel(null), driftSummary(null)]).toEqual(['none yet', 'never monitored']);
    expect(driftSummary({ verdict: 'healthy', drifted: [] })).toBe('healthy, no drift');
    expect(driftSummary({ verdict: 'insufficient data' })).toBe('insufficient data');
  });
});
