/**
 * mlops-nb's JupyterLab extension: a left side panel to browse and manage the model
 * registry of the project, the promotions waiting for approval, its model servers and
 * their health, and its scheduled jobs (through the server extension's REST API).
 */
import { ILayoutRestorer, JupyterFrontEnd, JupyterFrontEndPlugin } from '@jupyterlab/application';
import { ICommandPalette, MainAreaWidget, WidgetTracker } from '@jupyterlab/apputils';
import { IDocumentManager } from '@jupyterlab/docmanager';
import { ISettingRegistry } from '@jupyterlab/settingregistry';
import { ToolbarButton, refreshIcon } from '@jupyterlab/ui-components';
import { AccordionPanel } from '@lumino/widgets';

import {
  copyLoadSnippet,
  decideFlow,
  openJobNotebook,
  openSourceNotebook,
  promoteFlow,
  removeAliasFlow,
  reportFailure,
  runNowFlow,
  setAliasFlow,
  setPausedFlow,
  stopDeploymentFlow
} from './actions';
import { registryIcon } from './icons';
import { ApprovalsModel, DeploymentsModel, JobsModel, RegistryModel, VersionDetailModel } from './model';
import { IActions, IApprovalActions, IDeploymentActions, IJobActions } from './tokens';
import { ApprovalsView } from './widgets/ApprovalsView';
import { DeploymentsView } from './widgets/DeploymentsView';
import { JobsView } from './widgets/JobsView';
import { fitSectionsToContent, foldWhenEmpty } from './widgets/layout';
import { RegistryPanel } from './widgets/RegistryPanel';
import { RegistryView } from './widgets/RegistryView';
import { VersionDetailView } from './widgets/VersionDetailView';

export { registryIcon };

const CommandIDs = {
  open: 'mlops-nb:open-registry',
  refresh: 'mlops-nb:refresh-registry'
};

const plugin: JupyterFrontEndPlugin<void> = {
  id: 'mlops-nb:registry',
  description: 'A side panel to browse and manage the MLflow model registry of the project.',
  autoStart: true,
  requires: [IDocumentManager],
  optional: [ICommandPalette, ILayoutRestorer, ISettingRegistry],
  activate: (
    app: JupyterFrontEnd,
    docManager: IDocumentManager,
    palette: ICommandPalette | null,
    restorer: ILayoutRestorer | null,
    settingRegistry: ISettingRegistry | null
  ) => {
    const model = new RegistryModel();
    const jobs = new JobsModel();
    const deployments = new DeploymentsModel();
    const approvals = new ApprovalsModel();
    // One refresh button and one auto-refresh for the whole panel.
    model.follow(approvals);
    model.follow(jobs);
    model.follow(deployments);
    // A server that swapped versions has seen an alias move the list may not show yet.
    let served = '';
    deployments.stateChanged.connect(() => {
      const now = deployments.deployments.map(d => `${d.id}=${d.name}@${d.alias}:${d.version}`).join(' ');
      if (served && now !== served) {
        void model.refresh({ quiet: true }).catch(() => undefined);
      }
      served = now;
    });
    if (settingRegistry) {
      const apply = (settings: ISettingRegistry.ISettings) => {
        model.configure({
          pageSize: settings.get('pageSize').composite as number,
          autoRefreshSeconds: settings.get('autoRefreshSeconds').composite as number
        });
        const retryMs = 1000 * (settings.get('retrySeconds').composite as number);
        model.retry.firstDelay = retryMs;
        jobs.retry.firstDelay = retryMs;
      };
      settingRegistry
        .load(plugin.id)
        .then(settings => {
          apply(settings);
          settings.changed.connect(apply);
        })
        .catch(reason => console.warn('mlops-nb: registry settings not loaded, using defaults', reason));
    }
    const details = new WidgetTracker<MainAreaWidget<VersionDetailView>>({ namespace: 'mlops-nb-version' });

    const addToMainArea = (widget: MainAreaWidget) => {
      if (!widget.isAttached) {
        app.shell.add(widget, 'main');
      }
      app.shell.activateById(widget.id);
    };
    const afterChange = async (name: string) => {
      await model.refresh({ quiet: true }).catch(() => undefined);
      details.forEach(w => {
        if (w.content.model.name === name) {
          void w.content.model.reload();
        }
      });
    };

    // Dialogs about aliases read them live: what the list shows may be 30 s old.
    const aliasesOf = async (name: string): Promise<{ [alias: string]: string } | null> => {
      try {
        return await model.liveAliases(name);
      } catch (error) {
        reportFailure(`Could not read ${name}`, error);
        return null;
      }
    };

    const actions: IActions = {
      openDetail: (name, version) => {
        const id = `mlops-nb-version-${name}-${version}`;
        const existing = details.find(w => w.id === id);
        if (existing) {
          void existing.content.model.reload();
          app.shell.activateById(id);
          return;
        }
        const widget = new MainAreaWidget({
          content: new VersionDetailView(new VersionDetailModel(name, version), actions)
        });
        widget.id = id;
        widget.title.label = `${name} v${version}`;
        widget.title.icon = registryIcon;
        widget.title.closable = true;
        void details.add(widget);
        addToMainArea(widget);
      },
      openNotebook: (name, version) => void openSourceNotebook(docManager, addToMainArea, name, version),
      copySnippet: copyLoadSnippet,
      setAlias: async (name, version) => {
        const current = await aliasesOf(name);
        if (current && (await setAliasFlow(model, name, version, current))) {
          await afterChange(name);
        }
      },
      removeAlias: async (name, alias, version) => {
        if (await removeAliasFlow(model, name, alias, version)) {
          await afterChange(name);
        }
      },
      promote: async (name, version, metrics) => {
        const current = await aliasesOf(name);
        if (current && (await promoteFlow(model, name, version, current, metrics))) {
          // A protected alias did not move: the request now waits in the Approvals section.
          await Promise.all([afterChange(name), approvals.refresh({ quiet: true }).catch(() => undefined)]);
        }
      }
    };

    const approvalActions: IApprovalActions = {
      decide: (approval, decision) => void decideFlow(approvals, approval, decision),
      openVersion: actions.openDetail
    };
    // An approved move shows in the registry, the version tabs and (after its swap) the deployments at once.
    approvals.decided.connect((_, done) => {
      void afterChange(done.name);
      void deployments.refresh({ quiet: true }).catch(() => undefined);
    });

    const jobActions: IJobActions = {
      runNow: name => void runNowFlow(jobs, name),
      setPaused: (name, paused) => void setPausedFlow(jobs, name, paused),
      openJobNotebook: job => void openJobNotebook(docManager, addToMainArea, job)
    };

    const deploymentActions: IDeploymentActions = {
      stop: deployment => void stopDeploymentFlow(deployments, deployment),
      openVersion: actions.openDetail
    };

    const panel = new RegistryPanel(model);
    const view = new RegistryView(model, actions);
    view.title.label = 'Registered models';
    panel.addWidget(view);
    const approvalsView = new ApprovalsView(approvals, approvalActions);
    approvalsView.id = 'mlops-nb-approvals';
    approvalsView.title.label = 'Approvals';
    panel.addWidget(approvalsView);
    const deploymentsView = new DeploymentsView(deployments, deploymentActions);
    deploymentsView.id = 'mlops-nb-deployments';
    deploymentsView.title.label = 'Deployments';
    panel.addWidget(deploymentsView);
    const jobsView = new JobsView(jobs, jobActions);
    jobsView.id = 'mlops-nb-jobs';
    jobsView.title.label = 'Jobs';
    panel.addWidget(jobsView);
    fitSectionsToContent(panel.content as AccordionPanel);
    // Approvals are the exception: folded to its title until a promotion waits (or it fails to load).
    foldWhenEmpty(
      panel.content as AccordionPanel,
      approvalsView,
      () => !approvals.error && approvals.approvals.length === 0,
      approvals.stateChanged
    );
    panel.toolbar.addItem(
      'refresh',
      new ToolbarButton({
        icon: refreshIcon,
        tooltip: 'Refresh the registry and jobs',
        onClick: () => void model.refreshAll()
      })
    );
    app.shell.add(panel, 'left', { rank: 600 });
    if (restorer) {
      restorer.add(panel, 'mlops-nb-registry');
    }

    app.commands.addCommand(CommandIDs.open, {
      label: 'Show Model Registry',
      caption: 'Browse and manage the registered models of this project',
      icon: registryIcon,
      execute: () => app.shell.activateById(panel.id)
    });
    app.commands.addCommand(CommandIDs.refresh, {
      label: 'Refresh Model Registry and Jobs',
      execute: () => model.refreshAll()
    });
    if (palette) {
      palette.addItem({ command: CommandIDs.open, category: 'Model Registry' });
      palette.addItem({ command: CommandIDs.refresh, category: 'Model Registry' });
    }
  }
};

export default plugin;
