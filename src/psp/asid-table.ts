// The firmware's per-ASID bookkeeping (ASPFW sev_plat.h: dirty / clean / allocated / in_use
// bitmaps per CCX, collapsed here to one CCX).

export type AsidUse = 'free' | 'allocated' | 'in-use';

export class AsidTable {
  readonly #use: AsidUse[];
  readonly #dirty: boolean[];
  readonly #owner: number[];

  constructor(readonly maxAsid: number) {
    this.#use = new Array<AsidUse>(maxAsid + 1).fill('free');
    this.#dirty = new Array<boolean>(maxAsid + 1).fill(false);
    this.#owner = new Array<number>(maxAsid + 1).fill(0);
  }

  use(asid: number): AsidUse {
    return this.#use[asid] ?? 'free';
  }

  dirty(asid: number): boolean {
    return this.#dirty[asid] ?? false;
  }

  owner(asid: number): number {
    return this.#owner[asid] ?? 0;
  }

  /** INIT: every ASID dirty, nothing owned (ASPFW sev_mcmd_init_common). */
  markAllDirty(): void {
    this.#use.fill('free');
    this.#owner.fill(0);
    this.#dirty.fill(true);
    this.#dirty[0] = false;
  }

  /** SHUTDOWN: every binding dropped (dirty state stays until the next INIT). */
  releaseAll(): void {
    this.#use.fill('free');
    this.#owner.fill(0);
  }

  bind(asid: number, handle: number, use: AsidUse): void {
    this.#use[asid] = use;
    this.#owner[asid] = handle;
  }

  /** DEACTIVATE: an ASID that ran becomes dirty; one only allocated goes back to clean. */
  unbind(asid: number): void {
    if (this.#use[asid] === 'in-use') this.#dirty[asid] = true;
    this.#use[asid] = 'free';
    this.#owner[asid] = 0;
  }

  /** DF_FLUSH after WBINVD on every core. */
  cleanAll(): void {
    this.#dirty.fill(false);
  }

  dirtyAsids(): number[] {
    const out: number[] = [];
    for (let a = 1; a <= this.maxAsid; a++) if (this.#dirty[a]) out.push(a);
    return out;
  }
}
