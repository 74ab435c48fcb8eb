/**
 * One model version's detail tab: what the server says about it (aliases, lineage,
 * metrics, parameters, signature, alias history), or why it could not be read.
 */
import { VDomModel } from '@jupyterlab/ui-components';

import { ApiError, fetchVersion } from '../api';
import { IVersionDetail } from '../tokens';

/** A version's detail, read once on creation and again on `reload`. */
export class VersionDetailModel extends VDomModel {
  constructor(
    readonly name: string,
    readonly version: string
  ) {
    super();
    void this.reload();
  }

  /** The detail as last read; null until the first answer, or when it failed. */
  get detail(): IVersionDetail | null {
    return this._detail;
  }

  /** Why the last read failed; null when it worked. */
  get error(): ApiError | null {
    return this._error;
  }

  /** Read the version again (after an alias moved, or on Refresh). */
  async reload(): Promise<void> {
    try {
      this._detail = await fetchVersion(this.name, this.version);
      this._error = null;
    } catch (error) {
      this._error = ApiError.from(error);
    }
    if (!this.isDisposed) {
      this.stateChanged.emit();
    }
  }

  private _detail: IVersionDetail | null = null;
  private _error: ApiError | null = null;
}
