/**
 * What a user can do from the panel: to a model version, set, move or remove an alias
 * (always confirmed), promote through the guard, copy a load snippet, open the source
 * notebook; to a promotion waiting for approval, approve or reject it; to a schedule, run it now, pause or resume it, open a job's executed
 * notebook; to a model server, stop it (confirmed). Each ends by asking the model to
 * refresh, so what is shown is what is stored.
 */
import { Clipboard, Dialog, MainAreaWidget, Notification, showDialog } from '@jupyterlab/apputils';
import { IDocumentManager } from '@jupyterlab/docmanager';
import { IFrame, notebookIcon } from '@jupyterlab/ui-components';
import { Widget } from '@lumino/widgets';

import { aliasEffect, aliasInputPattern, aliasProblem } from './alias';
import * as api from './api';
import { lowerIsBetter } from './metrics';
import { ApprovalsModel, DeploymentsModel, JobsModel, RegistryModel } from './model';
import { IDeployment, IJobRow, INotebookSource, IPendingApproval } from './tokens';

/** An alias the panel offers first, the convention of `%mlops promote`. */
export const COMMON_ALIASES = ['champion', 'challenger'];

/** `models:/NAME@ALIAS` when the version holds an alias, else `models:/NAME/VERSION`. */
export function modelUri(name: string, version: string, aliases: string[]): string {
  const preferred = COMMON_ALIASES.find(a => aliases.includes(a)) ?? aliases[0];
  return preferred ? `models:/${name}@${preferred}` : `models:/${name}/${version}`;
}

export function loadSnippet(uri: string): string {
  return `import mlops_nb as mnb\n\nmodel = mnb.load(${JSON.stringify(uri)})\n`;
}

export function copyLoadSnippet(name: string, version: string, aliases: string[]): void {
  const uri = modelUri(name, version, aliases);
  Clipboard.copyToSystem(loadSnippet(uri));
  Notification.success(`Copied a snippet that loads ${uri}`, { autoClose: 3000 });
}

export function reportFailure(what: string, error: unknown): void {
  const err = api.ApiError.from(error);
  void showDialog({
    title: what,
    body: err.message,
    buttons: [Dialog.okButton({ label: 'Close' })]
  });
}

/** A field's one-line note: what the value will do, or (`error`) why it cannot be used. */
function setNote(note: HTMLElement, text: string, error: boolean): void {
  note.textContent = text;
  note.classList.toggle('jp-mlops-field-error', error);
}

/**
 * The set-alias dialog's body: the name, checked as it is typed. A refused name
 * (reserved, bad characters, already on this version) makes the input `:invalid`,
 * which disables the dialog's OK button, and the note below says why in one line.
 */
class AliasBody extends Widget implements Dialog.IBodyWidget<string> {
  constructor(
    private readonly _name: string,
    private readonly _version: string,
    private readonly _holders: { [alias: string]: string }
  ) {
    super({ node: document.createElement('form') });
    this.addClass('jp-mlops-alias-form');
    const listId = `jp-mlops-alias-choices-${++AliasBody._count}`;
    const offered = [...new Set([...COMMON_ALIASES, ...Object.keys(_holders)])].filter(a => _holders[a] !== _version);
    const held = Object.keys(_holders).sort();
    this.node.innerHTML = `
      <label>Alias (letters, digits, _ and -)
        <input name="alias" class="jp-mod-styled" required maxlength="255" autocomplete="off"
               spellcheck="false" placeholder="champion" list="${listId}" /></label>
      <datalist id="${listId}"></datalist>
      <div class="jp-mlops-field-note" aria-live="polite"></div>
      <div class="jp-mlops-field-hint"></div>`;
    const list = this.node.querySelector('datalist')!;
    offered.forEach(alias => list.appendChild(new Option(alias, alias)));
    (this.node.querySelector('.jp-mlops-field-hint') as HTMLElement).textContent = held.length
      ? `On ${_name} now: ${held.map(a => `@${a} → v${_holders[a]}`).join(', ')}.`
      : `${_name} has no aliases yet.`;
    this._input = this.node.querySelector('input')!;
    this._input.pattern = aliasInputPattern(held.filter(a => _holders[a] === _version));
    this._input.addEventListener('input', () => this._check());
    this.node.addEventListener('submit', event => event.preventDefault());
    this._check();
  }

  getValue(): string {
    return this._input.value;
  }

  protected onAfterAttach(): void {
    // The dialog checks its inputs only on input events: start with OK off, as the
    // empty field is.
    const ok = this.node.closest('.jp-Dialog')?.querySelector('.jp-Dialog-footer .jp-mod-accept');
    if (ok instanceof HTMLButtonElement) {
      ok.disabled = !this._input.checkValidity();
    }
  }

  private _check(): void {
    const value = this._input.value;
    const problem = aliasProblem(value, this._version, this._holders);
    const note = this.node.querySelector('.jp-mlops-field-note') as HTMLElement;
    if (problem) {
      setNote(note, problem, value !== '');
    } else {
      setNote(note, aliasEffect(this._name, value, this._version, this._holders), false);
    }
  }

  private _input: HTMLInputElement;
  private static _count = 0;
}

/**
 * Ask for an alias (checked as it is typed), confirm where it is now and where it will
 * go, then set it. `current` maps the model's aliases to the versions holding them.
 */
export async function setAliasFlow(
  model: RegistryModel,
  name: string,
  version: string,
  current: { [alias: string]: string }
): Promise<boolean> {
  const asked = await showDialog({
    title: `Set an alias on ${name} v${version}`,
    body: new AliasBody(name, version, current),
    focusNodeSelector: 'input',
    buttons: [Dialog.cancelButton(), Dialog.okButton({ label: 'Next' })]
  });
  if (!asked.button.accept || asked.value === null) {
    return false;
  }
  const alias = asked.value;
  // The input's pattern kept OK off for a refused name; the same rule, once more, in words.
  const problem = aliasProblem(alias, version, current);
  if (problem) {
    Notification.warning(problem, { autoClose: 5000 });
    return false;
  }
  const holder = current[alias];
  const confirmed = await showDialog({
    title: holder ? `Move @${alias}?` : `Set @${alias}?`,
    body: holder
      ? `@${alias} of ${name} points at v${holder}. Move it to v${version}? ` +
        `Code loading models:/${name}@${alias} will get v${version} from now on.`
      : `Point @${alias} of ${name} at v${version}?`,
    buttons: [Dialog.cancelButton(), Dialog.okButton({ label: holder ? 'Move alias' : 'Set alias' })]
  });
  if (!confirmed.button.accept) {
    return false;
  }
  try {
    await api.setAlias(name, alias, version);
    Notification.success(`@${alias} of ${name} now points at v${version}`, { autoClose: 3000 });
    return true;
  } catch (error) {
    reportFailure(`Could not set @${alias}`, error);
    return false;
  } finally {
    await model.refresh({ quiet: true }).catch(() => undefined);
  }
}

export async function removeAliasFlow(
  model: RegistryModel,
  name: string,
  alias: string,
  version: string
): Promise<boolean> {
  const confirmed = await showDialog({
    title: `Remove @${alias}?`,
    body:
      `Remove @${alias} from ${name} v${version}? ` +
      `Code loading models:/${name}@${alias} will fail until the alias is set again.`,
    buttons: [Dialog.cancelButton(), Dialog.warnButton({ label: 'Remove alias' })]
  });
  if (!confirmed.button.accept) {
    return false;
  }
  try {
    await api.removeAlias(name, alias);
    Notification.success(`Removed @${alias} from ${name} v${version}`, { autoClose: 3000 });
    return true;
  } catch (error) {
    reportFailure(`Could not remove @${alias}`, error);
    return false;
  } finally {
    await model.refresh({ quiet: true }).catch(() => undefined);
  }
}

interface IPromotionForm {
  from: string;
  to: string;
  metric: string;
  lower_is_better: boolean;
  min_delta: number;
}

/** `@alias (vN)`, or `(not set yet)`: an option naming where an alias points now. */
function aliasOption(alias: string, holders: { [alias: string]: string }): HTMLOptionElement {
  const where = holders[alias] ? `v${holders[alias]}` : 'not set yet';
  return new Option(`@${alias} (${where})`, alias);
}

/**
 * The promotion dialog's body: which of the version's aliases is the candidate, which
 * of the model's aliases moves to it, judged on which metric (the key metric first,
 * "lower is better" preset from its name).
 */
class PromotionBody extends Widget implements Dialog.IBodyWidget<IPromotionForm> {
  constructor(
    fromAliases: string[],
    private readonly _holders: { [alias: string]: string },
    metrics: string[]
  ) {
    super({ node: document.createElement('form') });
    this.addClass('jp-mlops-promotion-form');
    const node = this.node as HTMLFormElement;
    node.innerHTML = `
      <label>Candidate alias <select name="from" class="jp-mod-styled"></select></label>
      <label>Alias to move <select name="to" class="jp-mod-styled"></select></label>
      <label>Only if better on <select name="metric" class="jp-mod-styled"></select></label>
      <label class="jp-mlops-inline"><input type="checkbox" name="lower" /> lower is better</label>
      <label>by more than <input name="delta" class="jp-mod-styled" type="number" step="any" min="0" value="0" /></label>`;
    const from = this._field<HTMLSelectElement>('from');
    // The convention of %mlops promote: @challenger is the usual candidate.
    const candidates = [...fromAliases].sort((a, b) => Number(b === 'challenger') - Number(a === 'challenger'));
    candidates.forEach(alias => from.add(aliasOption(alias, _holders)));
    from.addEventListener('change', () => this._fillTargets());
    this._fillTargets();
    const metric = this._field<HTMLSelectElement>('metric');
    metrics.forEach((key, i) => metric.add(new Option(i === 0 ? `${key} (key metric)` : key, key)));
    const lower = this._field<HTMLInputElement>('lower');
    const presetLower = () => (lower.checked = lowerIsBetter(metric.value));
    metric.addEventListener('change', presetLower);
    presetLower();
    node.addEventListener('submit', event => event.preventDefault());
  }

  getValue(): IPromotionForm {
    return {
      from: this._field<HTMLSelectElement>('from').value,
      to: this._field<HTMLSelectElement>('to').value,
      metric: this._field<HTMLSelectElement>('metric').value,
      lower_is_better: this._field<HTMLInputElement>('lower').checked,
      min_delta: Number(this._field<HTMLInputElement>('delta').value || 0)
    };
  }

  /** The aliases that can move to the candidate: the model's and the usual ones, not the candidate's own. */
  private _fillTargets(): void {
    const from = this._field<HTMLSelectElement>('from').value;
    const to = this._field<HTMLSelectElement>('to');
    const previous = to.value;
    const choices = [...new Set([...COMMON_ALIASES, ...Object.keys(this._holders).sort()])].filter(a => a !== from);
    to.replaceChildren(...choices.map(alias => aliasOption(alias, this._holders)));
    to.value = choices.includes(previous) ? previous : choices.includes('champion') ? 'champion' : choices[0];
  }

  private _field<T extends HTMLElement>(name: string): T {
    return this.node.querySelector(`[name=${name}]`) as T;
  }
}

/**
 * Promote the version holding one of its aliases to another alias of the model, through
 * the same guard as `%mlops promote`; a refusal is shown with the guard's reasons.
 * `holders` maps the model's aliases to their versions (read just before); `metrics`
 * are ranked, the key metric first.
 */
export async function promoteFlow(
  model: RegistryModel,
  name: string,
  version: string,
  holders: { [alias: string]: string },
  metrics: string[]
): Promise<boolean> {
  const aliases = Object.keys(holders)
    .filter(alias => holders[alias] === version)
    .sort();
  if (!aliases.length) {
    Notification.warning(
      `Promotion moves an alias from the version holding another one: set an alias on ${name} v${version} first (for example @challenger).`,
      { autoClose: 6000 }
    );
    return false;
  }
  if (!metrics.length) {
    Notification.warning(`${name} v${version} has no metrics to judge a promotion on.`, { autoClose: 6000 });
    return false;
  }
  const result = await showDialog({
    title: `Promote ${name} v${version} if it is better`,
    body: new PromotionBody(aliases, holders, metrics),
    buttons: [Dialog.cancelButton(), Dialog.okButton({ label: 'Promote if better' })]
  });
  if (!result.button.accept || !result.value) {
    return false;
  }
  const form = result.value;
  try {
    const done = await api.promote(name, form);
    if (done.pending) {
      // Nothing moved: the alias is protected and the request waits in the Approvals section.
      Notification.info(
        `@${done.to_alias} of ${name} is protected: v${done.version} waits for approval in the panel.`,
        {
          autoClose: 8000
        }
      );
    } else {
      Notification.success(done.message, { autoClose: 5000 });
    }
    return true;
  } catch (error) {
    const err = api.ApiError.from(error);
    await showDialog({
      title: err.kind === 'refused' ? 'Promotion refused' : 'Could not promote',
      body: err.message,
      buttons: [Dialog.okButton({ label: 'Close' })]
    });
    return false;
  } finally {
    await model.refresh({ quiet: true }).catch(() => undefined);
  }
}

/** A read-only rendering of the notebook snapshot stored with a run. */
class SnapshotView extends IFrame {
  constructor(source: Extract<INotebookSource, { source: 'snapshot' }>) {
    // No scripts, no same-origin: the snapshot's outputs can hold arbitrary HTML.
    super({ sandbox: [] });
    this.addClass('jp-mlops-snapshot');
    const frame = this.node.querySelector('iframe') as HTMLIFrameElement;
    frame.srcdoc = source.html;
  }
}

/**
 * Show a notebook the server located: open the file when it is in the workspace, else
 * its rendering in a sandboxed tab. `caption` says what the rendering is.
 */
function showNotebook(
  docManager: IDocumentManager,
  addToMainArea: (widget: MainAreaWidget) => void,
  source: INotebookSource,
  label: string,
  caption: string
): void {
  if (source.source === 'workspace') {
    docManager.openOrReveal(source.path);
    return;
  }
  const content = new SnapshotView(source);
  const widget = new MainAreaWidget({ content });
  widget.id = `mlops-nb-snapshot-${source.run_id}`;
  widget.title.label = label;
  widget.title.icon = notebookIcon;
  widget.title.closable = true;
  widget.title.caption = caption;
  const note = document.createElement('div');
  note.className = 'jp-mlops-snapshot-note';
  note.textContent = caption;
  widget.toolbar.addItem('note', new Widget({ node: note }));
  addToMainArea(widget);
}

/** Open the notebook that trained a version: the file when it is under the server root, else the run's snapshot. */
export async function openSourceNotebook(
  docManager: IDocumentManager,
  addToMainArea: (widget: MainAreaWidget) => void,
  name: string,
  version: string
): Promise<void> {
  let source: INotebookSource;
  try {
    source = await api.fetchNotebook(name, version);
  } catch (error) {
    reportFailure(`No source notebook for ${name} v${version}`, error);
    return;
  }
  const caption =
    source.source === 'snapshot'
      ? `The notebook as it ran for ${name} v${version} (run ${source.run_id})` +
        (source.recorded_path ? `; ${source.recorded_path} is not under this server's root or was moved` : '')
      : '';
  showNotebook(
    docManager,
    addToMainArea,
    source,
    source.source === 'snapshot' ? `${source.name} (snapshot)` : '',
    caption
  );
}

/** Open a job's executed notebook: the file when it is in the workspace, else its HTML from the run. */
export async function openJobNotebook(
  docManager: IDocumentManager,
  addToMainArea: (widget: MainAreaWidget) => void,
  job: IJobRow
): Promise<void> {
  if (!job.run_id) {
    return;
  }
  let source: INotebookSource;
  try {
    source = await api.fetchJobNotebook(job.run_id);
  } catch (error) {
    reportFailure(`No executed notebook for run ${job.run_id}`, error);
    return;
  }
  const caption =
    source.source === 'snapshot'
      ? `${source.name} as job run ${source.run_id} executed it (${job.status.toLowerCase()}), read-only` +
        (source.recorded_path ? `; ${source.recorded_path} is outside this server's workspace` : '')
      : '';
  showNotebook(
    docManager,
    addToMainArea,
    source,
    source.source === 'snapshot' ? `${source.name} (job run)` : '',
    caption
  );
}

/** Run a schedule now; say that it started (or why not). */
export async function runNowFlow(model: JobsModel, name: string): Promise<void> {
  try {
    const record = await model.runNow(name);
    Notification.success(`Started ${name} now (job ${record.id}); it shows under Recent job runs.`, {
      autoClose: 4000
    });
  } catch (error) {
    reportFailure(`Could not run ${name}`, error);
  }
}

/** Pause or resume a schedule; say what changed (or why not). */
export async function setPausedFlow(model: JobsModel, name: string, paused: boolean): Promise<void> {
  try {
    const schedule = await model.setPaused(name, paused);
    Notification.success(
      paused
        ? `Paused ${name}: it will not fire until resumed.`
        : `Resumed ${name}: next run ${schedule.next_run ? new Date(schedule.next_run).toLocaleString() : 'unknown'}.`,
      { autoClose: 4000 }
    );
  } catch (error) {
    reportFailure(`Could not ${paused ? 'pause' : 'resume'} ${name}`, error);
  }
}

/** Approve or reject a pending promotion with the reason typed for it; say what happened (or why not). */
export async function decideFlow(
  model: ApprovalsModel,
  approval: IPendingApproval,
  decision: 'approve' | 'reject'
): Promise<boolean> {
  try {
    const done = await model.decide(approval, decision);
    const text =
      done.decision === 'approved'
        ? `Approved: @${done.alias} of ${done.name} now points at v${done.version}.`
        : `Rejected: @${done.alias} of ${done.name} stays ${done.previous_version ? `on v${done.previous_version}` : 'unset'}.`;
    Notification.success(text, { autoClose: 5000 });
    return true;
  } catch (error) {
    const what = decision === 'approve' ? 'approve' : 'reject';
    reportFailure(`Could not ${what} ${approval.name} v${approval.version} for @${approval.alias}`, error);
    return false;
  }
}

/** Stop a model server once the person confirms; say that it stopped (or why not). */
export async function stopDeploymentFlow(model: DeploymentsModel, deployment: IDeployment): Promise<void> {
  const served = deployment.version ? `${deployment.model} (v${deployment.version})` : deployment.model;
  const answer = await showDialog({
    title: 'Stop the model server?',
    body:
      `The server at ${deployment.url} stops serving ${served}: it finishes the requests in flight, ` +
      'then clients get connection errors until a server is started again.',
    buttons: [Dialog.cancelButton(), Dialog.warnButton({ label: 'Stop server' })]
  });
  if (!answer.button.accept) {
    return;
  }
  try {
    await model.stop(deployment.id);
    Notification.success(`Stopped the server at ${deployment.url}.`, { autoClose: 4000 });
  } catch (error) {
    reportFailure(`Could not stop the server at ${deployment.url}`, error);
  }
}
