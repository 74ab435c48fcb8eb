import * as React from 'react';

import { ToolbarButtonComponent, runIcon, stopIcon } from '@jupyterlab/ui-components';

import { nextRunText } from '../format';
import { JobsModel } from '../model';
import { IJobActions, ISchedule } from '../tokens';
import { PathText } from './PathText';
import { StatusBadge } from './StatusBadge';

/** A schedule: its target, cron and zone, next run, and Run now / Pause / Resume. */
export function ScheduleItem(props: { schedule: ISchedule; model: JobsModel; actions: IJobActions }): JSX.Element {
  const { schedule: s, model, actions } = props;
  const busy = model.busy(s.name);
  const next = s.next_run;
  return (
    <li className="jp-mlops-schedule" data-schedule={s.name} data-paused={String(s.paused)}>
      <div className="jp-mlops-schedule-head">
        <span className="jp-mlops-schedule-name">{s.name}</span>
        {s.paused && <span className="jp-mlops-badge jp-mlops-badge-small">paused</span>}
        {s.last_state && <StatusBadge status={s.last_state} title="the last job's state" />}
      </div>
      <div className="jp-mlops-schedule-target">
        runs <PathText path={s.target} />
      </div>
      <div className="jp-mlops-schedule-when">
        <code title="cron expression">{s.cron}</code> in {s.timezone} time
      </div>
      <div className="jp-mlops-next" title={next ? `${next} (UTC)` : undefined}>
        {s.paused || !next ? 'next run: none while paused' : `next run: ${nextRunText(next, s.timezone)}`}
      </div>
      <div className="jp-mlops-schedule-actions">
        <ToolbarButtonComponent
          icon={runIcon}
          label={busy === 'run' ? 'Starting…' : 'Run now'}
          tooltip={`Run ${s.target} now, in this server`}
          enabled={!busy}
          onClick={() => actions.runNow(s.name)}
        />
        <ToolbarButtonComponent
          icon={s.paused ? runIcon : stopIcon}
          label={busy === 'pause' ? 'Pausing…' : busy === 'resume' ? 'Resuming…' : s.paused ? 'Resume' : 'Pause'}
          tooltip={s.paused ? `Fire ${s.name} again from its next occurrence` : `Stop firing ${s.name}`}
          enabled={!busy}
          onClick={() => actions.setPaused(s.name, !s.paused)}
        />
      </div>
    </li>
  );
}
