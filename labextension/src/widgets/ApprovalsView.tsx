import * as React from 'react';

import { VDomRenderer } from '@jupyterlab/ui-components';

import { ApprovalItem } from '../components/ApprovalItem';
import { ErrorState } from '../components/ErrorState';
import { ApprovalsModel } from '../model';
import { IApprovalActions } from '../tokens';

/** The side panel's Approvals section: promotions of protected aliases waiting for a person. */
export class ApprovalsView extends VDomRenderer<ApprovalsModel> {
  constructor(
    model: ApprovalsModel,
    private readonly actions: IApprovalActions
  ) {
    super(model);
    this.addClass('jp-mlops-approvals');
    // The section's title counts what waits, so a collapsed section still says so.
    model.stateChanged.connect(() => {
      const count = model.approvals.length;
      this.title.label = count ? `Approvals (${count})` : 'Approvals';
    });
  }

  protected render(): JSX.Element {
    const model = this.model;
    const empty = !model.loading && !model.error && model.approvals.length === 0;
    // One body element: the panel sizes this section to its height (layout.ts).
    return (
      <div className="jp-mlops-section-body">
        {model.loading && <div className="jp-mlops-loading">Looking for promotions waiting for approval…</div>}
        {model.error && <ErrorState error={model.error} onRetry={() => void model.refresh()} what="approvals" />}
        {empty && (
          <div className="jp-mlops-approvals-empty">
            <p>No promotion waits for approval.</p>
            <p className="jp-mlops-muted">
              Promotions to a protected alias wait here: <code>approval_aliases</code> in pyproject.toml, or{' '}
              <code>mlops-nb protect NAME ALIAS</code>.
            </p>
          </div>
        )}
        <ul className="jp-mlops-approval-list">
          {model.approvals.map(a => (
            <ApprovalItem key={`${a.name}/${a.version}/${a.alias}`} approval={a} model={model} actions={this.actions} />
          ))}
        </ul>
      </div>
    );
  }
}
