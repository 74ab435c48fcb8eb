import * as React from 'react';

import { JobsModel } from '../model';

/** Whether this Jupyter server runs due jobs, or why its scheduler did not start. */
export function SchedulerNote(props: { model: JobsModel }): JSX.Element | null {
  const info = props.model.scheduler;
  if (!info) {
    return null;
  }
  if (info.error) {
    return (
      <div className="jp-mlops-scheduler-note jp-mlops-scheduler-error" role="alert">
        {info.error}
      </div>
    );
  }
  return info.in_server ? (
    <div className="jp-mlops-scheduler-note">Due jobs run in this Jupyter server.</div>
  ) : (
    <div className="jp-mlops-scheduler-note jp-mlops-muted">
      This server does not run due jobs: start <code>mlops-nb scheduler</code>, or set{' '}
      <code>c.MlopsNbApp.scheduler = True</code> and restart JupyterLab.
    </div>
  );
}
