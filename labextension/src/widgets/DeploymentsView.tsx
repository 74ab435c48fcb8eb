import * as React from 'react';

import { VDomRenderer } from '@jupyterlab/ui-components';

import { DeploymentItem } from '../components/DeploymentItem';
import { ErrorState } from '../components/ErrorState';
import { DeploymentsModel } from '../model';
import { IDeploymentActions } from '../tokens';

/** How a server gets here: from a cell, or from a terminal. */
const START_COMMANDS = ['%mlops serve models:/NAME@ALIAS', 'mlops-nb serve models:/NAME@ALIAS'];

/** The side panel's Deployments section: the project's model servers, live, each with Stop. */
export class DeploymentsView extends VDomRenderer<DeploymentsModel> {
  constructor(
    model: DeploymentsModel,
    private readonly actions: IDeploymentActions
  ) {
    super(model);
    this.addClass('jp-mlops-deployments');
  }

  protected render(): JSX.Element {
    const model = this.model;
    const empty = !model.loading && !model.error && model.deployments.length === 0;
    // One body element: the panel sizes this section to its height (layout.ts).
    return (
      <div className="jp-mlops-section-body">
        {model.loading && <div className="jp-mlops-loading">Looking for model servers…</div>}
        {model.error && <ErrorState error={model.error} onRetry={() => void model.refresh()} what="deployments" />}
        {empty && (
          <div className="jp-mlops-deployments-empty">
            <p>No model server of this project is running. Start one from a notebook cell or a terminal:</p>
            {START_COMMANDS.map(command => (
              <pre key={command}>{command}</pre>
            ))}
          </div>
        )}
        <ul className="jp-mlops-deployment-list">
          {model.deployments.map(d => (
            <DeploymentItem key={d.id} deployment={d} model={model} actions={this.actions} />
          ))}
        </ul>
      </div>
    );
  }
}
