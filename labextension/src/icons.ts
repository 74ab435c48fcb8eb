import { LabIcon } from '@jupyterlab/ui-components';

import registrySvg from '../style/icons/registry.svg';

/** The panel's icon: its sidebar tab and the version tabs. */
export const registryIcon = new LabIcon({ name: 'mlops-nb:registry', svgstr: registrySvg });
