import * as React from 'react';

import { VDomRenderer } from '@jupyterlab/ui-components';

import { AliasBadge } from '../components/AliasBadge';
import { ErrorState } from '../components/ErrorState';
import { KeyValueTable } from '../components/KeyValueTable';
import { formatNumber, formatTime, signatureColumns } from '../format';
import { rankMetricNames } from '../metrics';
import { VersionDetailModel } from '../model';
import { IActions } from '../tokens';

/**
 * A version's detail tab: aliases, how to load it, lineage, metrics, params, signature,
 * alias history. It shows its {@link VersionDetailModel}, which reads the server.
 */
export class VersionDetailView extends VDomRenderer<VersionDetailModel> {
  constructor(
    model: VersionDetailModel,
    private readonly actions: IActions
  ) {
    super(model);
    this.addClass('jp-mlops-detail');
  }

  dispose(): void {
    if (this.isDisposed) {
      return;
    }
    const model = this.model;
    super.dispose();
    model.dispose(); // the tab owns its model: nothing else reads it
  }

  protected render(): JSX.Element {
    const model = this.model;
    if (model.error) {
      return <ErrorState error={model.error} onRetry={() => void model.reload()} />;
    }
    const d = model.detail;
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
          <button className="jp-mod-styled" onClick={() => void model.reload()}>
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
}
