// Assembles a machine: the chip, and the PSP that alone receives the chip's key capabilities.
import { Soc, productProfile, type CacheGeometry, type ProductProfile } from '../soc/index.js';
import { Psp } from './psp.js';

export interface PlatformOptions {
  /** Product profile name; default Milan. */
  readonly product?: string;
  /** Makes every key and nonce of the run reproducible. */
  readonly seed?: string | number | bigint;
  /** Installed DRAM; default 1 GiB (sparse). */
  readonly dramBytes?: number;
  readonly cache?: CacheGeometry;
  /** Keep the platform identity (OCA, PEK, PDH) here across restarts; in memory if absent. */
  readonly stateDirectory?: string;
}

/** A simulated AMD EPYC host: the SoC and its PSP mailbox. */
export interface Platform {
  readonly profile: ProductProfile;
  readonly soc: Soc;
  readonly psp: Psp;
}

export function createPlatform(opts: PlatformOptions = {}): Platform {
  const profile = productProfile(opts.product ?? 'milan');
  const { soc, pspCapabilities } = Soc.assemble({
    profile,
    ...(opts.dramBytes !== undefined ? { dramBytes: opts.dramBytes } : {}),
    ...(opts.cache !== undefined ? { cache: opts.cache } : {}),
    ...(opts.seed !== undefined ? { seed: opts.seed } : {}),
  });
  const psp = new Psp(pspCapabilities, {
    profile,
    paging: soc.paging,
    ...(opts.seed !== undefined ? { seed: opts.seed } : {}),
    ...(opts.stateDirectory !== undefined ? { stateDirectory: opts.stateDirectory } : {}),
  });
  return { profile, soc, psp };
}
