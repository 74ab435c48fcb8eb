"""Jobs in time: schedules, the scheduler that runs them and the job history, built on
:mod:`mlops_nb.jobs.batch`."""
