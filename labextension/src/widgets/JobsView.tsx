import * as React from 'react';

import { VDomRenderer } from '@jupyterlab/ui-components';

import { ErrorState } from '../components/ErrorState';
import { JobItem } from '../components/JobItem';
import { ScheduleItem } from '../components/ScheduleItem';
import { SchedulerNote } from '../components/SchedulerNote';
import { JobsModel } from '../model';
import { IJobActions } from '../tokens';

/** The side panel's Jobs section: schedules (run now, pause, resume) and recent job runs. */
export class JobsView extends VDomRenderer<JobsModel> {
  constructor(
    model: JobsModel,
    private readonly actions: IJobActions
  ) {
    super(model);
    this.addClass('jp-mlops-jobs');
  }

  protected render(): JSX.Element {
    const model = this.model;
    const retry = () => void model.refresh();
    return (
      <div className="jp-mlops-section-body">
        {model.loading && <div className="jp-mlops-loading">Loading schedules and jobs…</div>}
        <SchedulerNote model={model} />
        <h3 className="jp-mlops-subhead">Schedules</h3>
        {model.schedulesError ? (
          <ErrorState error={model.schedulesError} retryAt={model.retry.due} onRetry={retry} what="jobs" />
        ) : (
          !model.loading &&
          model.schedules.length === 0 && (
            <div className="jp-mlops-schedules-empty">
              <p>No schedules yet. Add one in a terminal:</p>
              <pre>mlops-nb schedule add nightly --cron "0 2 * * *" --timezone Europe/Paris notebooks/train.ipynb</pre>
              <p>It appears here with its next run; Run now starts it at once.</p>
            </div>
          )
        )}
        <ul className="jp-mlops-schedules">
          {model.schedules.map(s => (
            <ScheduleItem key={s.name} schedule={s} model={model} actions={this.actions} />
          ))}
        </ul>
        <h3 className="jp-mlops-subhead">Recent job runs</h3>
        {model.jobsError ? (
          <ErrorState error={model.jobsError} retryAt={model.retry.due} onRetry={retry} what="jobs" />
        ) : (
          !model.loading &&
          model.jobs.length === 0 && (
            <div className="jp-mlops-jobs-empty">
              No job runs yet: Run now on a schedule, or <code>mlops-nb run NOTEBOOK</code> in a terminal.
            </div>
          )
        )}
        <ul className="jp-mlops-job-list">
          {model.jobs.map(j => (
            <JobItem key={j.run_id ?? `job-${j.job_id}`} job={j} actions={this.actions} />
          ))}
        </ul>
      </div>
    );
  }
}
