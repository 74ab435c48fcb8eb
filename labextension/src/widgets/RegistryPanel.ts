import { SidePanel } from '@jupyterlab/ui-components';
import { Message } from '@lumino/messaging';
import { Widget } from '@lumino/widgets';

import { registryIcon } from '../icons';
import { RegistryModel } from '../model';

/** The side panel; auto-refresh runs only while it is shown. */
export class RegistryPanel extends SidePanel {
  constructor(readonly model: RegistryModel) {
    super();
    this.id = 'mlops-nb-registry';
    this.addClass('jp-mlops-panel');
    this.title.icon = registryIcon;
    this.title.caption = 'Model registry, deployments and jobs (mlops-nb)';
    const heading = document.createElement('h2');
    heading.textContent = 'Model registry';
    this.header.addWidget(new Widget({ node: heading }));
  }

  protected onAfterShow(msg: Message): void {
    super.onAfterShow(msg);
    this.model.setVisible(true);
  }

  protected onAfterHide(msg: Message): void {
    super.onAfterHide(msg);
    this.model.setVisible(false);
  }
}
