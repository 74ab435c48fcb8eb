/**
 * The alias rule, checked as a person types so a name the server would refuse never
 * gets as far as a confirmation. It mirrors the server's `Alias` schema in
 * mlops_nb/server/openapi.yaml (and registry.check_alias): keep the two in step.
 */

/** Letters, digits, `_` and `-`, 1 to 255 of them (the OpenAPI `Alias` pattern). */
const ALIAS_CHARS = 'A-Za-z0-9_\\-';
const ALIAS_PATTERN = new RegExp(`^[${ALIAS_CHARS}]{1,255}$`);
/** Names MLflow gives versions itself: `latest` and `v<N>`, any case (the schema's `not` pattern). */
const RESERVED_SOURCE = '[lL][aA][tT][eE][sS][tT]|[vV][0-9]+';
const RESERVED = new RegExp(`^(?:${RESERVED_SOURCE})$`);

/**
 * Why `alias` cannot be set on `version`, in one line; null when it can.
 * `holders` maps the model's aliases to the versions holding them.
 */
export function aliasProblem(alias: string, version: string, holders: { [alias: string]: string }): string | null {
  if (!alias) {
    return 'Type an alias, for example champion or challenger.';
  }
  if (RESERVED.test(alias)) {
    return `@${alias} is reserved by MLflow (latest and v<N> name versions): choose another name.`;
  }
  if (alias.length > 255) {
    return 'An alias has at most 255 characters.';
  }
  if (!ALIAS_PATTERN.test(alias)) {
    const bad = [...new Set(alias.replace(/[A-Za-z0-9_-]/g, ''))].map(c => (c === ' ' ? 'space' : `“${c}”`));
    return `Only letters, digits, _ and - are allowed (not ${bad.join(', ')}).`;
  }
  if (holders[alias] === version) {
    return `v${version} already holds @${alias}.`;
  }
  return null;
}

/**
 * The same rule as an `<input pattern>`, so the browser marks a refused name `:invalid`
 * as it is typed (JupyterLab's dialog disables its OK button on an invalid input
 * before any listener of ours runs). `heldHere` are aliases the version already holds.
 */
export function aliasInputPattern(heldHere: string[]): string {
  // Held aliases passed the rule, so they hold no character a pattern would read as syntax.
  const refused = [RESERVED_SOURCE, ...heldHere.filter(a => ALIAS_PATTERN.test(a))].join('|');
  return `(?!(?:${refused})$)[${ALIAS_CHARS}]{1,255}`;
}

/** What setting `alias` on `version` will do, in one line (shown under a valid name). */
export function aliasEffect(
  name: string,
  alias: string,
  version: string,
  holders: { [alias: string]: string }
): string {
  const holder = holders[alias];
  return holder
    ? `Moves @${alias} from v${holder} to v${version}: models:/${name}@${alias} will load v${version}.`
    : `Sets a new alias: models:/${name}@${alias} will load v${version}.`;
}
