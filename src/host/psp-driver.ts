// The host's PSP driver (like Linux drivers/crypto/ccp/sev-dev.c): writes a command buffer into a
// host page, rings the mailbox, reads the buffer back, and turns a non-zero status into an error.
import {
  type Decoded,
  type FieldSpecs,
  SevStatus,
  type StructLayout,
  commandName,
  statusName,
} from '../abi/index.js';
import type { Mailbox } from '../psp/index.js';
import type { HostMemoryView, PagingFormat } from '../soc/index.js';

/** A PSP command that returned a status other than SUCCESS. */
export class PspCommandError extends Error {
  constructor(
    readonly command: number,
    readonly status: number,
  ) {
    super(`PSP command ${commandName(command)} failed: ${statusName(status)}`);
    this.name = 'PspCommandError';
  }
}

export class PspDriver {
  constructor(
    private readonly mailbox: Mailbox,
    private readonly memory: HostMemoryView,
    private readonly format: PagingFormat,
    /** A host page reserved for command buffers (like sev->cmd_buf). */
    private readonly commandPage: number,
    /** A host page for data the PSP writes (measurements). */
    readonly dataPage: number,
  ) {}

  /** Issues a command with no buffer (SHUTDOWN, DF_FLUSH). */
  simple(command: number): number {
    return this.mailbox.issue(command, 0);
  }

  /** Issues `command` with `fields` laid out by `layout`; returns status and the buffer as the PSP left it. */
  raw<S extends FieldSpecs>(
    command: number,
    layout: StructLayout<S>,
    fields: Partial<Decoded<S>>,
  ): { status: number; out: Decoded<S> } {
    this.memory.write(this.commandPage, layout.encode(fields), true);
    // The PSP reads through the coherent fabric under the same (SME) key, so no flush is needed.
    const status = this.mailbox.issue(command, this.format.withCBit(this.commandPage));
    return { status, out: layout.decode(this.memory.read(this.commandPage, layout.size, true)) };
  }

  /** As `raw`, throwing PspCommandError unless the status is SUCCESS. */
  call<S extends FieldSpecs>(
    command: number,
    layout: StructLayout<S>,
    fields: Partial<Decoded<S>>,
  ): Decoded<S> {
    const { status, out } = this.raw(command, layout, fields);
    if (status !== SevStatus.SUCCESS) throw new PspCommandError(command, status);
    return out;
  }

  /** As `simple`, throwing unless SUCCESS. */
  callSimple(command: number): void {
    const status = this.simple(command);
    if (status !== SevStatus.SUCCESS) throw new PspCommandError(command, status);
  }
}
