// The legacy SEV command set of the PSP model, driven through the real mailbox (host command page →
// Psp.issue → DMA), checked against AMD's published firmware (amd/AMD-ASPFW @3ca6650, sev_uapp/src):
// sev_mcmd.c, sev_dispatch.c, sev_guest.c, sev_es.c, x86_copy.c. Expected status codes come from
// that source (summarised in the research notes aspfw-commands.md), never from running the model.
import { createHash, createHmac } from 'node:crypto';
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import {
  ActivateBuffer,
  GuestState,
  GuestStatusBuffer,
  HandleBuffer,
  INIT_FLAG_ES,
  InitBuffer,
  LaunchMeasureBuffer,
  LaunchMeasurement,
  LaunchStartBuffer,
  LaunchUpdateBuffer,
  PLATFORM_CONFIG_ES,
  PlatformState,
  PlatformStatusBuffer,
  SevCommand,
  SevStatus,
  TMR_SIZE,
  encodeSevPolicy,
  type Decoded,
} from '../src/abi/index.js';
import { Hypervisor, type PspDriver } from '../src/host/index.js';
import { MAX_GUESTS, createPlatform, type Platform } from '../src/psp/index.js';

const S = SevStatus;
const PAGE = 4096;
const KNOWN_STATUS = new Set<number>(Object.values(SevStatus));

// ---- a machine and thin command helpers ---------------------------------------------------------

interface Env {
  readonly platform: Platform;
  readonly hv: Hypervisor;
  readonly d: PspDriver;
  /** A host page of our own for hand-built command buffers. */
  readonly scratch: number;
}

function machine(product = 'milan'): Env {
  const platform = createPlatform({ seed: 1, product });
  const hv = new Hypervisor(platform);
  return { platform, hv, d: hv.driver, scratch: hv.frames.allocate() };
}

const cbit = (e: Env, spa: number): number => e.platform.soc.paging.withCBit(spa);
const wbinvd = (e: Env): void => e.platform.soc.hostMemory.wbinvd();
const dfFlush = (e: Env): number => e.d.simple(SevCommand.DF_FLUSH);
const shutdown = (e: Env): number => e.d.simple(SevCommand.SHUTDOWN);
const init = (e: Env, f: Partial<Decoded<typeof InitBuffer.fields>>): number =>
  e.d.raw(SevCommand.INIT, InitBuffer, f).status;
const activate = (e: Env, handle: number, asid: number): number =>
  e.d.raw(SevCommand.ACTIVATE, ActivateBuffer, { handle, asid }).status;
const deactivate = (e: Env, handle: number): number =>
  e.d.raw(SevCommand.DEACTIVATE, HandleBuffer, { handle }).status;
const decommission = (e: Env, handle: number): number =>
  e.d.raw(SevCommand.DECOMMISSION, HandleBuffer, { handle }).status;
const finish = (e: Env, handle: number): number =>
  e.d.raw(SevCommand.LAUNCH_FINISH, HandleBuffer, { handle }).status;
const update = (e: Env, handle: number, paddr: number | bigint, length: number): number =>
  e.d.raw(SevCommand.LAUNCH_UPDATE_DATA, LaunchUpdateBuffer, { handle, paddr: BigInt(paddr), length }).status;

function measure(
  e: Env,
  handle: number,
  opts: { paddr?: number | bigint; length?: number } = {},
): { status: number; out: Decoded<typeof LaunchMeasureBuffer.fields> } {
  const paddr = BigInt(opts.paddr ?? cbit(e, e.d.dataPage));
  return e.d.raw(SevCommand.LAUNCH_MEASURE, LaunchMeasureBuffer, {
    handle,
    paddr,
    length: opts.length ?? LaunchMeasurement.size,
  });
}

function launchStart(e: Env, policy = 0, share = 0): { status: number; handle: number } {
  const { status, out } = e.d.raw(SevCommand.LAUNCH_START, LaunchStartBuffer, { handle: share, policy });
  return { status, handle: out.handle };
}

function platformStatus(e: Env): Decoded<typeof PlatformStatusBuffer.fields> {
  const { status, out } = e.d.raw(SevCommand.PLATFORM_STATUS, PlatformStatusBuffer, {});
  expect(status).toBe(S.SUCCESS);
  return out;
}

function guestStatus(
  e: Env,
  handle: number,
  echo: { policy?: number; asid?: number } = {},
): { status: number; out: Decoded<typeof GuestStatusBuffer.fields> } {
  return e.d.raw(SevCommand.GUEST_STATUS, GuestStatusBuffer, { handle, ...echo });
}

/** Issues `command` with `bytes` as its command buffer, laid out in our own host page. */
function issueBytes(e: Env, command: number, bytes: Uint8Array, encrypted = true): number {
  e.platform.soc.hostMemory.write(e.scratch, bytes, encrypted);
  return e.platform.psp.issue(command, encrypted ? cbit(e, e.scratch) : e.scratch);
}

/** Deterministic test plaintext. */
function pattern(length: number, salt = 0): Buffer {
  const b = Buffer.alloc(length);
  for (let i = 0; i < length; i++) b[i] = (i * 131 + salt * 17 + (i >>> 8)) & 0xff;
  return b;
}

/** Contiguous host frames holding `data` as plaintext (written through a C=0 mapping). */
function place(e: Env, data: Buffer, encrypted = false): number {
  const spa = e.hv.frames.allocateMany(Math.max(1, Math.ceil(data.length / PAGE)), true)[0] as number;
  e.platform.soc.hostMemory.write(spa, data, encrypted);
  return spa;
}

/** Linux-style bring-up: INIT with SEV-ES and a TMR, WBINVD, DF_FLUSH. */
function ready(product = 'milan'): Env {
  const e = machine(product);
  e.hv.initPlatform();
  return e;
}

/** A guest taken through the whole launch (LAUNCH_START, ACTIVATE, one LAUNCH_UPDATE_DATA, MEASURE, FINISH). */
function running(e: Env, asid: number, policy = 0): number {
  const ls = launchStart(e, policy);
  expect(ls.status).toBe(S.SUCCESS);
  expect(activate(e, ls.handle, asid)).toBe(S.SUCCESS);
  expect(update(e, ls.handle, place(e, pattern(64, ls.handle)), 64)).toBe(S.SUCCESS);
  expect(measure(e, ls.handle).status).toBe(S.SUCCESS);
  expect(finish(e, ls.handle)).toBe(S.SUCCESS);
  return ls.handle;
}

type LaunchPhase = 'LUPDATE' | 'LSECRET' | 'RUNNING';
/** A guest in `phase`; activated (pending/active) on `asid` unless asid is 0. */
function guestIn(e: Env, phase: LaunchPhase, asid: number, policy = 0): number {
  const { status, handle } = launchStart(e, policy);
  expect(status).toBe(S.SUCCESS);
  if (asid !== 0) expect(activate(e, handle, asid)).toBe(S.SUCCESS);
  if (phase !== 'LUPDATE') expect(measure(e, handle).status).toBe(S.SUCCESS);
  if (phase === 'RUNNING') expect(finish(e, handle)).toBe(S.SUCCESS);
  return handle;
}

/** Everything the host can observe about the firmware's state, plus the model's own summary. */
function snapshot(e: Env, handles = 8): unknown {
  return {
    platform: e.d.raw(SevCommand.PLATFORM_STATUS, PlatformStatusBuffer, {}),
    guests: Array.from({ length: handles }, (_, i) => guestStatus(e, i + 1)),
    psp: e.platform.psp.describe(),
  };
}

/** Runs a command that must fail with `expected` and checks that it changed nothing observable. */
function expectCleanFailure(e: Env, expected: number, run: () => number): void {
  expect(expected).not.toBe(S.SUCCESS);
  const before = snapshot(e);
  expect(run()).toBe(expected);
  expect(snapshot(e)).toEqual(before);
}

// ---- the launch measurement, recomputed independently ----------------------------------------------

/** sev-reference §5.2 (ASPFW sev_guest.c sev_guest_measure). */
function launchMeasurement(
  tik: Buffer,
  fw: { major: number; minor: number; build: number },
  policy: number,
  ld: Buffer,
  mnonce: Buffer,
): Buffer {
  const p = Buffer.alloc(4);
  p.writeUInt32LE(policy >>> 0);
  return createHmac('sha256', tik)
    .update(Buffer.from([0x04, fw.major, fw.minor, fw.build]))
    .update(p)
    .update(ld)
    .update(mnonce)
    .digest();
}

// =====================================================================================================

describe('every command in every platform state', () => {
  type StateName = 'UNINIT' | 'INIT' | 'WORKING';
  interface Fixture {
    e: Env;
    data: number;
  }
  // WORKING: guest 1 in LUPDATE, activation pending on ASID 100.
  function fixture(state: StateName): Fixture {
    const e = machine();
    const data = place(e, pattern(PAGE));
    if (state === 'UNINIT') {
      wbinvd(e);
      return { e, data };
    }
    e.hv.initPlatform();
    if (state === 'WORKING') {
      expect(launchStart(e).handle).toBe(1);
      expect(activate(e, 1, 100)).toBe(S.SUCCESS);
    }
    return { e, data };
  }

  const commands: { name: string; run: (f: Fixture) => number }[] = [
    { name: 'INIT', run: ({ e }) => init(e, { flags: 0 }) },
    { name: 'SHUTDOWN', run: ({ e }) => shutdown(e) },
    {
      name: 'PLATFORM_STATUS',
      run: ({ e }) => e.d.raw(SevCommand.PLATFORM_STATUS, PlatformStatusBuffer, {}).status,
    },
    { name: 'DF_FLUSH', run: ({ e }) => dfFlush(e) },
    { name: 'LAUNCH_START', run: ({ e }) => launchStart(e).status },
    { name: 'LAUNCH_UPDATE_DATA', run: ({ e, data }) => update(e, 1, data, PAGE) },
    { name: 'LAUNCH_MEASURE', run: ({ e }) => measure(e, 1).status },
    { name: 'LAUNCH_FINISH', run: ({ e }) => finish(e, 1) },
    { name: 'ACTIVATE', run: ({ e }) => activate(e, 1, 101) },
    { name: 'DEACTIVATE', run: ({ e }) => deactivate(e, 1) },
    { name: 'DECOMMISSION', run: ({ e }) => decommission(e, 1) },
    { name: 'GUEST_STATUS', run: ({ e }) => guestStatus(e, 1).status },
  ];

  const IPS = S.INVALID_PLATFORM_STATE;
  // [status, platform state after success]. Sources: ASPFW sev_mcmd.c handlers (state checks listed in
  // aspfw-commands.md): SHUTDOWN/PLATFORM_STATUS/DF_FLUSH have no state check; LAUNCH_START and
  // GUEST_STATUS need INIT or WORKING; the other guest commands need WORKING; INIT needs UNINIT.
  const expected: Record<StateName, Record<string, [number, number?]>> = {
    UNINIT: {
      INIT: [S.SUCCESS, PlatformState.INIT],
      SHUTDOWN: [S.SUCCESS, PlatformState.UNINIT],
      PLATFORM_STATUS: [S.SUCCESS, PlatformState.UNINIT],
      DF_FLUSH: [S.SUCCESS, PlatformState.UNINIT], // no state check (sev_mcmd_df_flush); WBINVD was done
      LAUNCH_START: [IPS],
      LAUNCH_UPDATE_DATA: [IPS],
      LAUNCH_MEASURE: [IPS],
      LAUNCH_FINISH: [IPS],
      ACTIVATE: [IPS],
      DEACTIVATE: [IPS],
      DECOMMISSION: [IPS],
      GUEST_STATUS: [IPS],
    },
    INIT: {
      INIT: [IPS],
      SHUTDOWN: [S.SUCCESS, PlatformState.UNINIT],
      PLATFORM_STATUS: [S.SUCCESS, PlatformState.INIT],
      DF_FLUSH: [S.SUCCESS, PlatformState.INIT],
      LAUNCH_START: [S.SUCCESS, PlatformState.WORKING],
      LAUNCH_UPDATE_DATA: [IPS],
      LAUNCH_MEASURE: [IPS],
      LAUNCH_FINISH: [IPS],
      ACTIVATE: [IPS],
      DEACTIVATE: [IPS],
      DECOMMISSION: [IPS],
      GUEST_STATUS: [S.SUCCESS, PlatformState.INIT],
    },
    WORKING: {
      INIT: [IPS],
      SHUTDOWN: [S.SUCCESS, PlatformState.UNINIT],
      PLATFORM_STATUS: [S.SUCCESS, PlatformState.WORKING],
      DF_FLUSH: [S.SUCCESS, PlatformState.WORKING],
      LAUNCH_START: [S.SUCCESS, PlatformState.WORKING],
      LAUNCH_UPDATE_DATA: [S.SUCCESS, PlatformState.WORKING],
      LAUNCH_MEASURE: [S.SUCCESS, PlatformState.WORKING],
      LAUNCH_FINISH: [S.INVALID_GUEST_STATE], // guest still in LUPDATE
      ACTIVATE: [S.ACTIVE], // ASID 101 is free, but guest 1 is already pending on 100
      DEACTIVATE: [S.SUCCESS, PlatformState.WORKING],
      DECOMMISSION: [S.ACTIVE], // pending activation counts as active (asid_is_active)
      GUEST_STATUS: [S.SUCCESS, PlatformState.WORKING],
    },
  };

  const rows = (['UNINIT', 'INIT', 'WORKING'] as const).flatMap((state) =>
    commands.map((c) => ({
      state,
      name: c.name,
      run: c.run,
      status: expected[state][c.name]?.[0] as number,
      after: expected[state][c.name]?.[1],
    })),
  );

  it.each(rows)('$state: $name', ({ state, run, status, after }) => {
    const f = fixture(state);
    if (status === S.SUCCESS) {
      expect(run(f)).toBe(S.SUCCESS);
      expect(platformStatus(f.e).state).toBe(after);
    } else {
      expectCleanFailure(f.e, status, () => run(f));
    }
  });

  it('guest commands check the platform state before the handle (INIT, unknown handle)', () => {
    const e = ready();
    for (const h of [0, 1, 7, 0xffffffff]) {
      expectCleanFailure(e, S.INVALID_PLATFORM_STATE, () => update(e, h, 1, 3));
      expectCleanFailure(e, S.INVALID_PLATFORM_STATE, () => measure(e, h, { length: 0 }).status);
      expectCleanFailure(e, S.INVALID_PLATFORM_STATE, () => finish(e, h));
      expectCleanFailure(e, S.INVALID_PLATFORM_STATE, () => activate(e, h, 0));
      expectCleanFailure(e, S.INVALID_PLATFORM_STATE, () => deactivate(e, h));
      expectCleanFailure(e, S.INVALID_PLATFORM_STATE, () => decommission(e, h));
    }
  });

  it('INIT in INIT/WORKING fails on the state before looking at the flags', () => {
    const e = ready();
    expectCleanFailure(e, S.INVALID_PLATFORM_STATE, () => init(e, { flags: 0xfffe }));
    launchStart(e);
    expectCleanFailure(e, S.INVALID_PLATFORM_STATE, () => init(e, { flags: 0xfffe }));
  });

  it('PLATFORM_STATUS reports version, state, ES config and guest count; UNINIT forces config and count to 0', () => {
    const e = machine();
    const fw = e.platform.profile.firmware;
    expect(platformStatus(e)).toEqual({
      apiMajor: fw.major,
      apiMinor: fw.minor,
      state: 0,
      owner: 0,
      config: 0,
      buildId: fw.build,
      guestCount: 0,
    });
    e.hv.initPlatform();
    expect(platformStatus(e)).toMatchObject({
      state: PlatformState.INIT,
      config: PLATFORM_CONFIG_ES,
      guestCount: 0,
    });
    launchStart(e);
    launchStart(e);
    expect(platformStatus(e)).toMatchObject({
      state: PlatformState.WORKING,
      config: PLATFORM_CONFIG_ES,
      guestCount: 2,
    });
    expect(shutdown(e)).toBe(S.SUCCESS);
    expect(platformStatus(e)).toMatchObject({ state: PlatformState.UNINIT, config: 0, guestCount: 0 });
    // SHUTDOWN is valid from UNINIT too (UNINIT→UNINIT is in the state table).
    expect(shutdown(e)).toBe(S.SUCCESS);
  });

  it('SHUTDOWN from WORKING decommissions every guest; the next INIT needs WBINVD + DF_FLUSH again', () => {
    const e = ready();
    const a = running(e, 100);
    guestIn(e, 'LUPDATE', 101);
    expect(shutdown(e)).toBe(S.SUCCESS);
    expect(platformStatus(e)).toMatchObject({ state: PlatformState.UNINIT, guestCount: 0 });
    expect(guestStatus(e, a).status).toBe(S.INVALID_PLATFORM_STATE);
    expect(init(e, { flags: 0 })).toBe(S.SUCCESS);
    expect(platformStatus(e)).toMatchObject({ state: PlatformState.INIT, config: 0, guestCount: 0 });
    expect(guestStatus(e, a).out.state).toBe(GuestState.UNINIT);
    const b = launchStart(e).handle;
    expect(b).toBe(1);
    expect(activate(e, b, 102)).toBe(S.DF_FLUSH_REQUIRED);
    wbinvd(e);
    expect(dfFlush(e)).toBe(S.SUCCESS);
    expect(activate(e, b, 100)).toBe(S.SUCCESS); // ASID 100's old binding died with SHUTDOWN
  });
});

describe('dispatch', () => {
  // IDs with no handler in ASPFW master_handler_table (sev_dispatch.c), plus 0xCC (main.c internal ID).
  const unknownIds = [
    0x00, 0x10, 0x1f, 0x26, 0x2f, 0x37, 0x3f, 0x45, 0x4f, 0x54, 0x5f, 0x62, 0x6f, 0x72, 0x80, 0x87, 0x96,
    0xa3, 0xb2, 0xc4, 0xc5, 0xcc, 0xcf, 0xef, 0xff,
  ];

  it.each(['UNINIT', 'INIT', 'WORKING'] as const)(
    'unknown command IDs → INVALID_COMMAND in %s, before any other check',
    (state) => {
      const e = machine();
      if (state !== 'UNINIT') e.hv.initPlatform();
      if (state === 'WORKING') launchStart(e);
      for (const id of unknownIds) {
        expectCleanFailure(e, S.INVALID_COMMAND, () => issueBytes(e, id, Buffer.alloc(64, 0xa5)));
        // The ID is rejected before the buffer address is even looked at.
        expectCleanFailure(e, S.INVALID_COMMAND, () =>
          e.platform.psp.issue(id, e.platform.soc.dram.sizeBytes + PAGE),
        );
      }
    },
  );

  it('a command buffer outside DRAM → INVALID_ADDRESS for every command that has one', () => {
    const e = ready();
    launchStart(e);
    const top = e.platform.soc.dram.sizeBytes;
    const withBuffer = [
      SevCommand.INIT,
      SevCommand.PLATFORM_STATUS,
      SevCommand.LAUNCH_START,
      SevCommand.LAUNCH_UPDATE_DATA,
      SevCommand.LAUNCH_MEASURE,
      SevCommand.LAUNCH_FINISH,
      SevCommand.ACTIVATE,
      SevCommand.DEACTIVATE,
      SevCommand.DECOMMISSION,
      SevCommand.GUEST_STATUS,
    ];
    for (const command of withBuffer) {
      for (const address of [top, top - 2, top + PAGE, cbit(e, top), cbit(e, top - 2), 2 ** 52, -PAGE]) {
        expectCleanFailure(e, S.INVALID_ADDRESS, () => e.platform.psp.issue(command, address));
      }
    }
  });

  it('SHUTDOWN and DF_FLUSH take no buffer, so their buffer address is never checked', () => {
    const e = ready();
    const bogus = e.platform.soc.dram.sizeBytes + PAGE;
    expect(e.platform.psp.issue(SevCommand.DF_FLUSH, bogus)).toBe(S.SUCCESS);
    expect(e.platform.psp.issue(SevCommand.SHUTDOWN, bogus)).toBe(S.SUCCESS);
    expect(platformStatus(e).state).toBe(PlatformState.UNINIT);
  });

  it('the command buffer is read and written under the key its C-bit selects', () => {
    const e = ready();
    const mem = e.platform.soc.hostMemory;
    for (const encrypted of [true, false]) {
      const page = e.hv.frames.allocate(); // a fresh page: no stale lines under the other key
      mem.write(page, Buffer.alloc(PlatformStatusBuffer.size), encrypted);
      expect(e.platform.psp.issue(SevCommand.PLATFORM_STATUS, encrypted ? cbit(e, page) : page)).toBe(
        S.SUCCESS,
      );
      const same = PlatformStatusBuffer.decode(mem.read(page, PlatformStatusBuffer.size, encrypted));
      expect(same).toMatchObject({
        state: PlatformState.INIT,
        apiMajor: e.platform.profile.firmware.major,
        config: PLATFORM_CONFIG_ES,
      });
      const other = mem.read(page, PlatformStatusBuffer.size, !encrypted);
      expect(other.equals(PlatformStatusBuffer.encode(same))).toBe(false);
    }
  });

  it('the mailbox log records every command and its status', () => {
    const e = machine();
    const n = e.platform.psp.log.length;
    shutdown(e);
    issueBytes(e, 0xff, Buffer.alloc(16));
    expect(e.platform.psp.log.slice(n)).toEqual([
      { command: SevCommand.SHUTDOWN, status: S.SUCCESS },
      { command: 0xff, status: S.INVALID_COMMAND },
    ]);
  });
});

describe('INIT', () => {
  function tmr(e: Env): number {
    return e.hv.frames.allocateAligned(TMR_SIZE, TMR_SIZE);
  }

  it.each([0x2, 0x3, 0x4, 0x80, 0x100, 0x8000, 0x8001, 0x10000, 0x80000000, 0xffffffff])(
    'flags %s as a u32 at 0x00 (unknown bits set) → INVALID_CONFIG',
    (flags) => {
      const e = machine();
      const base = tmr(e);
      // The firmware's flags are a u16; bits 16..31 of a u32 land in reserved bytes 0x02–0x03.
      const reserved = Buffer.alloc(6);
      reserved.writeUInt16LE(flags >>> 16, 0);
      expectCleanFailure(e, S.INVALID_CONFIG, () =>
        init(e, { flags: flags & 0xffff, reserved, tmrPaddr: BigInt(base), tmrLength: TMR_SIZE }),
      );
      expect(platformStatus(e).state).toBe(PlatformState.UNINIT);
    },
  );

  it('unknown flag bits are reported before a bad TMR (buffer validation precedes the ES TMR step)', () => {
    const e = machine();
    expectCleanFailure(e, S.INVALID_CONFIG, () =>
      init(e, { flags: INIT_FLAG_ES | 0x2, tmrPaddr: 0x1234n, tmrLength: 7 }),
    );
  });

  const esCases: { what: string; offset: number; length: number; status: number }[] = [
    { what: 'TMR 4 KiB off a 1 MiB boundary', offset: 0x1000, length: TMR_SIZE, status: S.INVALID_ADDRESS },
    {
      what: 'TMR 512 KiB off a 1 MiB boundary',
      offset: 0x80000,
      length: TMR_SIZE,
      status: S.INVALID_ADDRESS,
    },
    { what: 'TMR 1 byte off', offset: 1, length: TMR_SIZE, status: S.INVALID_ADDRESS },
    {
      what: 'misaligned TMR and wrong length (address is checked first)',
      offset: 0x1000,
      length: 0,
      status: S.INVALID_ADDRESS,
    },
    { what: 'TMR length 0', offset: 0, length: 0, status: S.INVALID_LENGTH },
    { what: 'TMR length 1 MiB - 1', offset: 0, length: TMR_SIZE - 1, status: S.INVALID_LENGTH },
    { what: 'TMR length 1 MiB + 4 KiB', offset: 0, length: TMR_SIZE + PAGE, status: S.INVALID_LENGTH },
    {
      what: 'TMR length 2 MiB (the SNP size, but the RMP is not initialised)',
      offset: 0,
      length: 2 * TMR_SIZE,
      status: S.INVALID_LENGTH,
    },
  ];
  it.each(esCases)('ES: $what → $status', ({ offset, length, status }) => {
    const e = machine();
    const base = tmr(e);
    expectCleanFailure(e, status, () =>
      init(e, { flags: INIT_FLAG_ES, tmrPaddr: BigInt(base + offset), tmrLength: length }),
    );
    expect(platformStatus(e)).toMatchObject({ state: PlatformState.UNINIT, config: 0 });
  });

  it('ES: an aligned TMR outside DRAM → INVALID_ADDRESS (validate_address_range after the C-bit is masked)', () => {
    const e = machine();
    const top = e.platform.soc.dram.sizeBytes;
    expectCleanFailure(e, S.INVALID_ADDRESS, () =>
      init(e, { flags: INIT_FLAG_ES, tmrPaddr: BigInt(top), tmrLength: TMR_SIZE }),
    );
    expectCleanFailure(e, S.INVALID_ADDRESS, () =>
      init(e, { flags: INIT_FLAG_ES, tmrPaddr: BigInt(cbit(e, top)), tmrLength: TMR_SIZE }),
    );
  });

  it('ES: a good TMR (with or without the C-bit) → SUCCESS, config reports ES', () => {
    for (const withC of [false, true]) {
      const e = machine();
      const base = tmr(e);
      expect(
        init(e, { flags: INIT_FLAG_ES, tmrPaddr: BigInt(withC ? cbit(e, base) : base), tmrLength: TMR_SIZE }),
      ).toBe(S.SUCCESS);
      expect(platformStatus(e)).toMatchObject({
        state: PlatformState.INIT,
        config: PLATFORM_CONFIG_ES,
        guestCount: 0,
      });
    }
  });

  it('without ES the TMR fields are ignored completely', () => {
    const e = machine();
    expect(init(e, { flags: 0, tmrPaddr: 0xffff_ffff_ffff_ffffn, tmrLength: 3 })).toBe(S.SUCCESS);
    expect(platformStatus(e)).toMatchObject({ state: PlatformState.INIT, config: 0 });
  });

  it('without ES, an ES guest policy is refused at LAUNCH_START with UNSUPPORTED, and nothing changes', () => {
    const e = machine();
    expect(init(e, { flags: 0 })).toBe(S.SUCCESS);
    expectCleanFailure(
      e,
      S.UNSUPPORTED,
      () => launchStart(e, encodeSevPolicy({ encryptedState: true })).status,
    );
    expect(platformStatus(e)).toMatchObject({ state: PlatformState.INIT, guestCount: 0 });
  });

  // Regression (once wrong in the model): ASPFW sev_mcmd.h declares the INIT buffer as `u16 flags;
  // u8 reserved[6]` and init_cmd_buf_valid (sev_mcmd.c l.71-80) requires flags ⊆ {ES} AND
  // reserved[6] all zero, so any non-zero byte in 0x02..0x07 is INVALID_CONFIG.
  it('a non-zero reserved byte at 0x04..0x07 → INVALID_CONFIG (init_cmd_buf_valid)', () => {
    const e = machine();
    const buf = InitBuffer.encode({ flags: 0 });
    buf[0x05] = 0x01;
    expect(issueBytes(e, SevCommand.INIT, buf)).toBe(S.INVALID_CONFIG);
  });

  // Regression (once wrong in the model): the TMR alignment is tested on Number(cmd.tmrPaddr),
  // which drops the low bits of a u64 ≥ 2^53 (2^60 + 16 rounds to 2^60, "1 MiB aligned"). ASPFW
  // sev_es_reserve_trusted_region (sev_es.c l.77-120) tests the full u64: not 1 MiB aligned →
  // INVALID_ADDRESS before the length check.
  it('ES: the TMR alignment is checked on the full 64-bit address (2^60 + 16, bad length → INVALID_ADDRESS)', () => {
    const e = machine();
    expect(init(e, { flags: INIT_FLAG_ES, tmrPaddr: (1n << 60n) + 16n, tmrLength: 0 })).toBe(
      S.INVALID_ADDRESS,
    );
  });

  it('INIT clears WBINVD_DONE: a DF_FLUSH right after INIT needs a fresh WBINVD', () => {
    const e = machine();
    wbinvd(e);
    expect(init(e, { flags: 0 })).toBe(S.SUCCESS);
    expectCleanFailure(e, S.WBINVD_REQUIRED, () => dfFlush(e));
    wbinvd(e);
    expect(dfFlush(e)).toBe(S.SUCCESS);
    expect(dfFlush(e)).toBe(S.SUCCESS); // DF_FLUSH does not consume the flag
  });
});

describe('LAUNCH_START', () => {
  it('allocates the lowest free handle; a decommissioned handle is reused; guest_count follows', () => {
    const e = ready();
    expect([1, 2, 3].map(() => launchStart(e).handle)).toEqual([1, 2, 3]);
    expect(platformStatus(e).guestCount).toBe(3);
    expect(decommission(e, 2)).toBe(S.SUCCESS);
    expect(platformStatus(e)).toMatchObject({ state: PlatformState.WORKING, guestCount: 2 });
    expect(launchStart(e).handle).toBe(2);
    expect(launchStart(e).handle).toBe(4);
    expect(guestStatus(e, 4).out).toMatchObject({ handle: 4, state: GuestState.LUPDATE, asid: 0, policy: 0 });
  });

  it(`RESOURCE_LIMIT once all ${MAX_GUESTS} guest slots are taken`, () => {
    const e = ready();
    for (let i = 1; i <= MAX_GUESTS; i++) expect(launchStart(e).handle).toBe(i);
    expect(platformStatus(e).guestCount).toBe(MAX_GUESTS);
    const before = { platform: platformStatus(e), psp: e.platform.psp.describe() };
    expect(launchStart(e).status).toBe(S.RESOURCE_LIMIT);
    expect({ platform: platformStatus(e), psp: e.platform.psp.describe() }).toEqual(before);
    expect(decommission(e, 777)).toBe(S.SUCCESS);
    expect(launchStart(e).handle).toBe(777);
  });

  it('without a session the policy is not validated (reserved bits, API version)', () => {
    const e = ready();
    for (const policy of [0x0000ffc0, 0x00ff0000, 0xff000000, 0xffffffff & ~0x4]) {
      const { status, handle } = launchStart(e, policy >>> 0);
      expect(status).toBe(S.SUCCESS);
      expect(guestStatus(e, handle).out).toMatchObject({ policy: policy >>> 0, state: GuestState.LUPDATE });
    }
  });

  it('key sharing: unknown handle → INVALID_GUEST, different policy or NOKS → POLICY_FAILURE; output only on success', () => {
    const e = ready();
    const noks = launchStart(e, encodeSevPolicy({ noKeySharing: true })).handle;
    const sharable = launchStart(e, encodeSevPolicy({ noDebug: true })).handle;
    const cases: [share: number, policy: number, status: number][] = [
      [9, 0, S.INVALID_GUEST],
      [MAX_GUESTS + 1, 0, S.INVALID_GUEST],
      [noks, encodeSevPolicy({ noKeySharing: true }), S.POLICY_FAILURE],
      [sharable, 0, S.POLICY_FAILURE],
      [sharable, encodeSevPolicy({ noDebug: true, noSend: true }), S.POLICY_FAILURE],
    ];
    for (const [share, policy, status] of cases) {
      let out: Decoded<typeof LaunchStartBuffer.fields> | undefined;
      expectCleanFailure(e, status, () => {
        const r = e.d.raw(SevCommand.LAUNCH_START, LaunchStartBuffer, { handle: share, policy });
        out = r.out;
        return r.status;
      });
      expect(out?.handle).toBe(share); // not written back on failure (CMD_BUF_INPUT_AND_OUTPUT)
    }
    const shared = launchStart(e, encodeSevPolicy({ noDebug: true }), sharable);
    expect(shared).toEqual({ status: S.SUCCESS, handle: 3 });
  });

  it('key sharing copies the VEK: the same plaintext at the same address encrypts identically', () => {
    const e = ready();
    const a = launchStart(e, 0).handle;
    const b = launchStart(e, 0, a).handle;
    const c = launchStart(e, 0).handle;
    const mem = e.platform.soc.hostMemory;
    const spa = place(e, Buffer.alloc(PAGE));
    const ciphertext = (handle: number, asid: number): Buffer => {
      expect(activate(e, handle, asid)).toBe(S.SUCCESS);
      mem.write(spa, pattern(256, 9), false);
      expect(update(e, handle, spa, 256)).toBe(S.SUCCESS);
      return mem.read(spa, 256, false);
    };
    const ca = ciphertext(a, 100);
    const cb = ciphertext(b, 101);
    const cc = ciphertext(c, 102);
    expect(ca.equals(pattern(256, 9))).toBe(false);
    expect(cb.equals(ca)).toBe(true);
    expect(cc.equals(ca)).toBe(false);
  });
});

describe('guest state rules', () => {
  it('unknown handles → INVALID_GUEST for every guest command (handle 0, free, 1024, 1025, 0xffffffff)', () => {
    const e = ready();
    const g = guestIn(e, 'LUPDATE', 100);
    const data = place(e, pattern(PAGE));
    for (const h of [0, g + 1, MAX_GUESTS, MAX_GUESTS + 1, 0xffffffff]) {
      expectCleanFailure(e, S.INVALID_GUEST, () => update(e, h, data, PAGE));
      expectCleanFailure(e, S.INVALID_GUEST, () => measure(e, h).status);
      expectCleanFailure(e, S.INVALID_GUEST, () => finish(e, h));
      expectCleanFailure(e, S.INVALID_GUEST, () => activate(e, h, 101));
      expectCleanFailure(e, S.INVALID_GUEST, () => deactivate(e, h));
      expectCleanFailure(e, S.INVALID_GUEST, () => decommission(e, h));
      if (h !== 0) expectCleanFailure(e, S.INVALID_GUEST, () => launchStart(e, 0, h).status);
    }
  });

  it('GUEST_STATUS of an unknown handle → SUCCESS, state 0, policy and ASID echoed back', () => {
    const e = ready();
    for (const h of [0, 1, MAX_GUESTS, MAX_GUESTS + 1, 0xffffffff]) {
      expect(guestStatus(e, h, { policy: 0xdeadbeef, asid: 0x1234 })).toEqual({
        status: S.SUCCESS,
        out: { handle: h, policy: 0xdeadbeef, asid: 0x1234, state: 0 },
      });
    }
    guestIn(e, 'LUPDATE', 0);
    expect(guestStatus(e, 2, { policy: 7, asid: 9 }).out).toEqual({
      handle: 2,
      policy: 7,
      asid: 9,
      state: 0,
    });
  });

  it('GUEST_STATUS of a known guest: policy, ASID (pending counts), state', () => {
    const e = ready();
    const policy = encodeSevPolicy({ noDebug: true, noKeySharing: true, apiMajor: 1 });
    const g = guestIn(e, 'LUPDATE', 0, policy);
    expect(guestStatus(e, g, { policy: 1, asid: 2 }).out).toEqual({
      handle: g,
      policy,
      asid: 0,
      state: GuestState.LUPDATE,
    });
    expect(activate(e, g, 150)).toBe(S.SUCCESS);
    expect(guestStatus(e, g).out).toEqual({ handle: g, policy, asid: 150, state: GuestState.LUPDATE });
    expect(measure(e, g).status).toBe(S.SUCCESS);
    expect(guestStatus(e, g).out.state).toBe(GuestState.LSECRET);
    expect(finish(e, g)).toBe(S.SUCCESS);
    expect(guestStatus(e, g).out).toEqual({ handle: g, policy, asid: 150, state: GuestState.RUNNING });
    expect(deactivate(e, g)).toBe(S.SUCCESS);
    expect(guestStatus(e, g).out).toEqual({ handle: g, policy, asid: 0, state: GuestState.RUNNING });
  });

  // LAUNCH_UPDATE_DATA: WORKING, handle, LUPDATE (INVALID_GUEST_STATE), then inactive (INACTIVE).
  const updateRows: { phase: LaunchPhase; asid: number; status: number }[] = [
    { phase: 'LUPDATE', asid: 100, status: S.SUCCESS },
    { phase: 'LUPDATE', asid: 0, status: S.INACTIVE },
    { phase: 'LSECRET', asid: 100, status: S.INVALID_GUEST_STATE },
    { phase: 'LSECRET', asid: 0, status: S.INVALID_GUEST_STATE },
    { phase: 'RUNNING', asid: 100, status: S.INVALID_GUEST_STATE },
    { phase: 'RUNNING', asid: 0, status: S.INVALID_GUEST_STATE },
  ];
  it.each(updateRows)('LAUNCH_UPDATE_DATA in $phase (asid $asid) → $status', ({ phase, asid, status }) => {
    const e = ready();
    const g = guestIn(e, phase, asid);
    const data = place(e, pattern(PAGE));
    if (status === S.SUCCESS) {
      expect(update(e, g, data, PAGE)).toBe(S.SUCCESS);
      expect(guestStatus(e, g).out.state).toBe(GuestState.LUPDATE); // no state change
    } else {
      expectCleanFailure(e, status, () => update(e, g, data, PAGE));
      expect(e.platform.soc.hostMemory.read(data, PAGE, false).equals(pattern(PAGE))).toBe(true);
    }
  });

  it('INACTIVE is reported before the address and length checks', () => {
    const e = ready();
    const g = guestIn(e, 'LUPDATE', 0);
    expectCleanFailure(e, S.INACTIVE, () => update(e, g, 0x1001, 3));
  });

  // LAUNCH_MEASURE: LUPDATE → LSECRET; no INACTIVE check.
  const measureRows: { phase: LaunchPhase; asid: number; status: number }[] = [
    { phase: 'LUPDATE', asid: 100, status: S.SUCCESS },
    { phase: 'LUPDATE', asid: 0, status: S.SUCCESS },
    { phase: 'LSECRET', asid: 100, status: S.INVALID_GUEST_STATE },
    { phase: 'RUNNING', asid: 100, status: S.INVALID_GUEST_STATE },
    { phase: 'RUNNING', asid: 0, status: S.INVALID_GUEST_STATE },
  ];
  it.each(measureRows)('LAUNCH_MEASURE in $phase (asid $asid) → $status', ({ phase, asid, status }) => {
    const e = ready();
    const g = guestIn(e, phase, asid);
    if (status === S.SUCCESS) {
      expect(measure(e, g).status).toBe(S.SUCCESS);
      expect(guestStatus(e, g).out).toMatchObject({ state: GuestState.LSECRET, asid });
    } else {
      expectCleanFailure(e, status, () => measure(e, g).status);
    }
  });

  // LAUNCH_FINISH: requires LSECRET; no INACTIVE check.
  const finishRows: { phase: LaunchPhase; asid: number; status: number }[] = [
    { phase: 'LUPDATE', asid: 100, status: S.INVALID_GUEST_STATE },
    { phase: 'LUPDATE', asid: 0, status: S.INVALID_GUEST_STATE },
    { phase: 'LSECRET', asid: 100, status: S.SUCCESS },
    { phase: 'LSECRET', asid: 0, status: S.SUCCESS },
    { phase: 'RUNNING', asid: 100, status: S.INVALID_GUEST_STATE },
  ];
  it.each(finishRows)('LAUNCH_FINISH in $phase (asid $asid) → $status', ({ phase, asid, status }) => {
    const e = ready();
    const g = guestIn(e, phase, asid);
    if (status === S.SUCCESS) {
      expect(finish(e, g)).toBe(S.SUCCESS);
      expect(guestStatus(e, g).out).toMatchObject({ state: GuestState.RUNNING, asid });
    } else {
      expectCleanFailure(e, status, () => finish(e, g));
    }
  });

  it('LAUNCH_FINISH completes a pending activation: the guest is active afterwards', () => {
    const e = ready();
    const g = guestIn(e, 'LSECRET', 120);
    expect(e.platform.psp.describe().guests[0]).toMatchObject({
      handle: g,
      activation: 'pending',
      asid: 120,
    });
    expect(finish(e, g)).toBe(S.SUCCESS);
    expect(e.platform.psp.describe().guests[0]).toMatchObject({
      handle: g,
      activation: 'active',
      asid: 120,
      state: GuestState.RUNNING,
    });
    expect(decommission(e, g)).toBe(S.ACTIVE);
  });

  it('ACTIVATE is allowed in LUPDATE, LSECRET and RUNNING; on a RUNNING guest it is active at once', () => {
    const e = ready();
    const phases: LaunchPhase[] = ['LUPDATE', 'LSECRET', 'RUNNING'];
    phases.forEach((phase, i) => {
      const g = guestIn(e, phase, 0);
      expect(activate(e, g, 200 + i)).toBe(S.SUCCESS);
    });
    expect(e.platform.psp.describe().guests.map((g) => g.activation)).toEqual([
      'pending',
      'pending',
      'active',
    ]);
  });
});

describe('ACTIVATE check order and ASID bookkeeping (mcmd_activate_common → activate_common → sev_guest_activate)', () => {
  it('INVALID_ASID for 0 and above the maximum comes before ASID_OWNED, ACTIVE and DF_FLUSH_REQUIRED', () => {
    const e = ready();
    const active = running(e, 100);
    const fresh = guestIn(e, 'LUPDATE', 0);
    const max = e.platform.profile.maxSevAsid;
    for (const g of [active, fresh]) {
      for (const asid of [0, max + 1, 1007, 0x7fffffff, 0xffffffff])
        expectCleanFailure(e, S.INVALID_ASID, () => activate(e, g, asid));
    }
    // Right after INIT every ASID is dirty, yet 0 is still INVALID_ASID.
    const f = machine();
    expect(init(f, { flags: 0 })).toBe(S.SUCCESS);
    const h = launchStart(f).handle;
    expectCleanFailure(f, S.INVALID_ASID, () => activate(f, h, 0));
    expectCleanFailure(f, S.INVALID_ASID, () => activate(f, h, max + 1));
  });

  it('the maximum ASID is the product’s: Milan 509, Genoa 1006 (ASPFW MAX_SEV_ASIDS)', () => {
    for (const [product, max] of [
      ['milan', 509],
      ['genoa', 1006],
    ] as const) {
      const e = ready(product);
      expect(e.platform.profile.maxSevAsid).toBe(max);
      const a = launchStart(e).handle;
      const b = launchStart(e).handle;
      expect(activate(e, a, max)).toBe(S.SUCCESS);
      expectCleanFailure(e, S.INVALID_ASID, () => activate(e, b, max + 1));
    }
  });

  it('ASID_OWNED for an ASID held by any guest (even the caller itself), before ACTIVE and the ES range', () => {
    const e = ready();
    const a = running(e, 100); // active, in use
    const p = guestIn(e, 'LUPDATE', 101); // pending, allocated
    const b = guestIn(e, 'LUPDATE', 0);
    const es = guestIn(e, 'LUPDATE', 0, encodeSevPolicy({ encryptedState: true }));
    expectCleanFailure(e, S.ASID_OWNED, () => activate(e, a, 100));
    expectCleanFailure(e, S.ASID_OWNED, () => activate(e, p, 101));
    expectCleanFailure(e, S.ASID_OWNED, () => activate(e, a, 101));
    expectCleanFailure(e, S.ASID_OWNED, () => activate(e, b, 100));
    expectCleanFailure(e, S.ASID_OWNED, () => activate(e, b, 101));
    expectCleanFailure(e, S.ASID_OWNED, () => activate(e, es, 100)); // not INVALID_ASID: ownership first
  });

  it('ACTIVE for an already active or pending guest, before DF_FLUSH_REQUIRED and the ES range', () => {
    const e = ready();
    const a = running(e, 100);
    const p = guestIn(e, 'LUPDATE', 101);
    const c = running(e, 103);
    expect(deactivate(e, c)).toBe(S.SUCCESS); // 103 is now dirty
    for (const g of [a, p]) {
      expectCleanFailure(e, S.ACTIVE, () => activate(e, g, 102));
      expectCleanFailure(e, S.ACTIVE, () => activate(e, g, 103)); // dirty, but ACTIVE wins
      expectCleanFailure(e, S.ACTIVE, () => activate(e, g, 5)); // wrong range, but ACTIVE wins
    }
  });

  it('DF_FLUSH_REQUIRED right after INIT until WBINVD + DF_FLUSH; dirty is checked before the ES range', () => {
    const e = machine();
    const tmr = e.hv.frames.allocateAligned(TMR_SIZE, TMR_SIZE);
    wbinvd(e);
    expect(init(e, { flags: INIT_FLAG_ES, tmrPaddr: BigInt(tmr), tmrLength: TMR_SIZE })).toBe(S.SUCCESS);
    const n = launchStart(e).handle;
    const es = launchStart(e, encodeSevPolicy({ encryptedState: true })).handle;
    expectCleanFailure(e, S.DF_FLUSH_REQUIRED, () => activate(e, n, 100));
    expectCleanFailure(e, S.DF_FLUSH_REQUIRED, () => activate(e, n, 5)); // ES range, non-ES guest
    expectCleanFailure(e, S.DF_FLUSH_REQUIRED, () => activate(e, es, 100)); // non-ES range, ES guest
    expectCleanFailure(e, S.DF_FLUSH_REQUIRED, () => activate(e, es, 1));
    // INIT cleared WBINVD_DONE, so DF_FLUSH needs a WBINVD first…
    expectCleanFailure(e, S.WBINVD_REQUIRED, () => dfFlush(e));
    expectCleanFailure(e, S.DF_FLUSH_REQUIRED, () => activate(e, n, 100));
    // …and a WBINVD alone does not clean anything.
    wbinvd(e);
    expectCleanFailure(e, S.DF_FLUSH_REQUIRED, () => activate(e, n, 100));
    expect(dfFlush(e)).toBe(S.SUCCESS);
    expectCleanFailure(e, S.INVALID_ASID, () => activate(e, n, 5));
    expectCleanFailure(e, S.INVALID_ASID, () => activate(e, es, 100));
    expect(activate(e, n, 100)).toBe(S.SUCCESS);
    expect(activate(e, es, 1)).toBe(S.SUCCESS);
  });

  const ranges: { es: boolean; asid: number; status: number }[] = [
    { es: false, asid: 1, status: S.INVALID_ASID },
    { es: false, asid: 99, status: S.INVALID_ASID },
    { es: false, asid: 100, status: S.SUCCESS },
    { es: false, asid: 509, status: S.SUCCESS },
    { es: true, asid: 1, status: S.SUCCESS },
    { es: true, asid: 99, status: S.SUCCESS },
    { es: true, asid: 100, status: S.INVALID_ASID },
    { es: true, asid: 509, status: S.INVALID_ASID },
  ];
  it.each(ranges)('ES guest $es, ASID $asid (minSevAsid 100) → $status', ({ es, asid, status }) => {
    const e = ready();
    expect(e.platform.profile.minSevAsid).toBe(100);
    const g = launchStart(e, encodeSevPolicy({ encryptedState: es })).handle;
    if (status === S.SUCCESS) {
      expect(activate(e, g, asid)).toBe(S.SUCCESS);
      expect(guestStatus(e, g).out.asid).toBe(asid);
    } else {
      expectCleanFailure(e, status, () => activate(e, g, asid));
    }
  });

  it('DEACTIVATE of a guest that ran makes its ASID dirty and clears WBINVD_DONE', () => {
    const e = ready();
    const a = running(e, 100);
    const b = guestIn(e, 'LUPDATE', 0);
    expect(deactivate(e, a)).toBe(S.SUCCESS);
    expect(guestStatus(e, a).out).toMatchObject({ state: GuestState.RUNNING, asid: 0 });
    expectCleanFailure(e, S.DF_FLUSH_REQUIRED, () => activate(e, b, 100));
    expectCleanFailure(e, S.DF_FLUSH_REQUIRED, () => activate(e, a, 100));
    expectCleanFailure(e, S.WBINVD_REQUIRED, () => dfFlush(e));
    wbinvd(e);
    expect(dfFlush(e)).toBe(S.SUCCESS);
    // A RUNNING guest re-activated is active (in use) immediately.
    expect(activate(e, a, 100)).toBe(S.SUCCESS);
    expect(guestStatus(e, a).out.asid).toBe(100);
    expect(e.platform.psp.describe().guests.find((g) => g.handle === a)?.activation).toBe('active');
    expect(decommission(e, a)).toBe(S.ACTIVE);
  });

  it.each(['LUPDATE', 'LSECRET'] as const)(
    'DEACTIVATE of a never-run (pending, %s) guest leaves its ASID clean',
    (phase) => {
      const e = ready();
      const p = guestIn(e, phase, 100);
      expect(deactivate(e, p)).toBe(S.SUCCESS);
      const q = guestIn(e, 'LUPDATE', 0);
      expect(activate(e, q, 100)).toBe(S.SUCCESS); // no DF_FLUSH needed
      expect(dfFlush(e)).toBe(S.SUCCESS); // WBINVD_DONE was not cleared either
      expect(activate(e, p, 101)).toBe(S.SUCCESS);
    },
  );

  it('DEACTIVATE of an inactive guest → INACTIVE; it is allowed in every guest state', () => {
    const e = ready();
    for (const phase of ['LUPDATE', 'LSECRET', 'RUNNING'] as const) {
      const g = guestIn(e, phase, 0);
      expectCleanFailure(e, S.INACTIVE, () => deactivate(e, g));
      expect(activate(e, g, 300)).toBe(S.SUCCESS);
      expect(deactivate(e, g)).toBe(S.SUCCESS);
      expectCleanFailure(e, S.INACTIVE, () => deactivate(e, g));
      wbinvd(e);
      expect(dfFlush(e)).toBe(S.SUCCESS);
    }
  });

  it('DECOMMISSION: ACTIVE while active or pending; after DEACTIVATE it succeeds; WORKING→INIT when the last guest goes', () => {
    const e = ready();
    const a = running(e, 100);
    const p = guestIn(e, 'LUPDATE', 101);
    const i = guestIn(e, 'LSECRET', 0);
    expectCleanFailure(e, S.ACTIVE, () => decommission(e, a));
    expectCleanFailure(e, S.ACTIVE, () => decommission(e, p));
    expect(decommission(e, i)).toBe(S.SUCCESS); // never activated
    expect(platformStatus(e)).toMatchObject({ state: PlatformState.WORKING, guestCount: 2 });
    expect(guestStatus(e, i).out.state).toBe(0);
    expectCleanFailure(e, S.INVALID_GUEST, () => decommission(e, i));
    expect(deactivate(e, a)).toBe(S.SUCCESS);
    expect(decommission(e, a)).toBe(S.SUCCESS);
    expect(platformStatus(e)).toMatchObject({ state: PlatformState.WORKING, guestCount: 1 });
    expect(deactivate(e, p)).toBe(S.SUCCESS);
    expect(decommission(e, p)).toBe(S.SUCCESS);
    expect(platformStatus(e)).toMatchObject({ state: PlatformState.INIT, guestCount: 0 });
    // Back in INIT: guest commands need WORKING again; LAUNCH_START restarts at handle 1.
    expectCleanFailure(e, S.INVALID_PLATFORM_STATE, () => activate(e, 1, 102));
    expect(launchStart(e).handle).toBe(1);
    // ASID 100 ran, so it is dirty after DEACTIVATE; 101 was only pending, so it is clean.
    expectCleanFailure(e, S.DF_FLUSH_REQUIRED, () => activate(e, 1, 100));
    expect(activate(e, 1, 101)).toBe(S.SUCCESS);
  });
});

describe('LAUNCH_UPDATE_DATA and LAUNCH_MEASURE buffer checks', () => {
  function lupdate(): { e: Env; g: number; data: number } {
    const e = ready();
    const g = guestIn(e, 'LUPDATE', 100);
    return { e, g, data: place(e, pattern(2 * PAGE), false) };
  }

  const top = (e: Env): number => e.platform.soc.dram.sizeBytes;
  const rows: {
    what: string;
    paddr: (e: Env, data: number) => number | bigint;
    length: number;
    status: number;
  }[] = [
    { what: 'paddr +1', paddr: (_e, d) => d + 1, length: 16, status: S.INVALID_ADDRESS },
    { what: 'paddr +8', paddr: (_e, d) => d + 8, length: 16, status: S.INVALID_ADDRESS },
    { what: 'paddr +15, length 4096', paddr: (_e, d) => d + 15, length: PAGE, status: S.INVALID_ADDRESS },
    {
      what: 'paddr +1 and length 0 (address first)',
      paddr: (_e, d) => d + 1,
      length: 0,
      status: S.INVALID_ADDRESS,
    },
    { what: 'length 0', paddr: (_e, d) => d, length: 0, status: S.INVALID_LENGTH },
    { what: 'length 1', paddr: (_e, d) => d, length: 1, status: S.INVALID_LENGTH },
    { what: 'length 15', paddr: (_e, d) => d, length: 15, status: S.INVALID_LENGTH },
    { what: 'length 17', paddr: (_e, d) => d, length: 17, status: S.INVALID_LENGTH },
    { what: 'length 4095', paddr: (_e, d) => d, length: PAGE - 1, status: S.INVALID_LENGTH },
    { what: 'length 0xffffffff', paddr: (_e, d) => d, length: 0xffffffff, status: S.INVALID_LENGTH },
    { what: 'paddr at the end of DRAM', paddr: (e) => top(e), length: 16, status: S.INVALID_ADDRESS },
    {
      what: 'range crossing the end of DRAM',
      paddr: (e) => top(e) - 16,
      length: 32,
      status: S.INVALID_ADDRESS,
    },
    { what: 'C-bit + end of DRAM', paddr: (e) => cbit(e, top(e)), length: 16, status: S.INVALID_ADDRESS },
    { what: 'paddr 2^60', paddr: () => 1n << 60n, length: 16, status: S.INVALID_ADDRESS },
    {
      what: 'paddr 0xffff_ffff_ffff_fff0',
      paddr: () => 0xffff_ffff_ffff_fff0n,
      length: 16,
      status: S.INVALID_ADDRESS,
    },
    { what: 'aligned paddr +16, length 16', paddr: (_e, d) => d + 16, length: 16, status: S.SUCCESS },
    { what: 'whole 2 pages', paddr: (_e, d) => d, length: 2 * PAGE, status: S.SUCCESS },
    { what: 'the last 16 bytes of DRAM', paddr: (e) => top(e) - 16, length: 16, status: S.SUCCESS },
  ];
  it.each(rows)('LAUNCH_UPDATE_DATA $what → $status', ({ paddr, length, status }) => {
    const { e, g, data } = lupdate();
    if (status === S.SUCCESS) {
      expect(update(e, g, paddr(e, data), length)).toBe(S.SUCCESS);
    } else {
      expectCleanFailure(e, status, () => update(e, g, paddr(e, data), length));
      expect(e.platform.soc.hostMemory.read(data, 2 * PAGE, false).equals(pattern(2 * PAGE))).toBe(true);
      expect(measure(e, g).status).toBe(S.SUCCESS); // the guest is still usable
    }
  });

  it.each([0, 1, 0x10, 0x2f])(
    'LAUNCH_MEASURE length %s → INVALID_LENGTH, 0x30 written back, nothing measured',
    (length) => {
      const { e, g } = lupdate();
      const dest = cbit(e, e.d.dataPage);
      const mem = e.platform.soc.hostMemory;
      mem.write(e.d.dataPage, Buffer.alloc(LaunchMeasurement.size, 0xee), true);
      let out: Decoded<typeof LaunchMeasureBuffer.fields> | undefined;
      expectCleanFailure(e, S.INVALID_LENGTH, () => {
        const r = measure(e, g, { paddr: dest, length });
        out = r.out;
        return r.status;
      });
      expect(out).toEqual({ handle: g, paddr: BigInt(dest), length: 0x30 });
      expect(
        mem
          .read(e.d.dataPage, LaunchMeasurement.size, true)
          .equals(Buffer.alloc(LaunchMeasurement.size, 0xee)),
      ).toBe(true);
      expect(guestStatus(e, g).out.state).toBe(GuestState.LUPDATE);
      expect(measure(e, g, { length: 0x30 }).status).toBe(S.SUCCESS);
    },
  );

  it.each([0x30, 0x31, 0x1000, 0xffffffff])(
    'LAUNCH_MEASURE length %s → SUCCESS, length left as given',
    (length) => {
      const { e, g } = lupdate();
      const r = measure(e, g, { length });
      expect(r.status).toBe(S.SUCCESS);
      expect(r.out.length).toBe(length);
    },
  );

  it('LAUNCH_MEASURE: the length is written back only on INVALID_LENGTH (not on earlier failures)', () => {
    const { e, g } = lupdate();
    expect(measure(e, 9, { length: 0 })).toMatchObject({ status: S.INVALID_GUEST, out: { length: 0 } });
    expect(measure(e, g).status).toBe(S.SUCCESS);
    expect(measure(e, g, { length: 0 })).toMatchObject({ status: S.INVALID_GUEST_STATE, out: { length: 0 } });
  });

  it('LAUNCH_MEASURE to an address outside DRAM → INVALID_ADDRESS; the guest stays in LUPDATE', () => {
    const { e, g } = lupdate();
    for (const paddr of [top(e), top(e) - 0x20, cbit(e, top(e))]) {
      expectCleanFailure(e, S.INVALID_ADDRESS, () => measure(e, g, { paddr }).status);
    }
    expect(guestStatus(e, g).out.state).toBe(GuestState.LUPDATE);
  });

  // Regression (once wrong in the model): ASPFW copy_from_x86/copy_to_x86 run
  // validate_address_range (x86_copy.c l.81-225), which rejects with INVALID_ADDRESS any range
  // overlapping the SEV-ES TMR — while it is reserved by INIT (reserved_tmr_base, checked when the
  // context is initialised) and, after the first DF_FLUSH, as a valid hardware TMR
  // (sev_es_init_trusted_region → sev_hal_set_tmr).
  it('LAUNCH_UPDATE_DATA into the SEV-ES TMR → INVALID_ADDRESS (validate_address_range)', () => {
    const e = machine();
    const tmr = e.hv.frames.allocateAligned(TMR_SIZE, TMR_SIZE);
    expect(init(e, { flags: INIT_FLAG_ES, tmrPaddr: BigInt(tmr), tmrLength: TMR_SIZE })).toBe(S.SUCCESS);
    wbinvd(e);
    expect(dfFlush(e)).toBe(S.SUCCESS);
    const g = guestIn(e, 'LUPDATE', 100);
    expect(update(e, g, tmr + PAGE, 16)).toBe(S.INVALID_ADDRESS);
  });
});

describe('LAUNCH_MEASURE value (sev-reference §5.2)', () => {
  it('the formula reproduces the virtee test vector', () => {
    const m = launchMeasurement(
      Buffer.from('66320db73158a35a255d051758e95ed4', 'hex'),
      { major: 0, minor: 0x12, build: 0x0f },
      0,
      createHash('sha256').digest(),
      Buffer.from('4fbe0bedbad6c86ae8f68971d103e554', 'hex'),
    );
    expect(m.toString('hex')).toBe('6faab2daae389bcd3405a05d6cafe33c0414f7bedd0bae19ba5f38b7fd1664ea');
  });

  it('HMAC(zero TIK) over 0x04‖api‖build‖policy‖SHA256(all LAUNCH_UPDATE_DATA plaintext in order)‖mnonce', () => {
    const e = ready();
    const fw = e.platform.profile.firmware;
    const mem = e.platform.soc.hostMemory;
    const policy = encodeSevPolicy({
      noDebug: true,
      noKeySharing: true,
      domain: true,
      apiMajor: 0,
      apiMinor: 17,
    });
    const g = guestIn(e, 'LUPDATE', 100, policy);
    // Three updates in a chosen order: a page through C=0, 48 bytes through C=1 (paddr with the C-bit),
    // then 4 KiB + 32 that straddle a page boundary.
    const p1 = pattern(PAGE, 1);
    const p2 = pattern(48, 2);
    const p3 = pattern(PAGE + 32, 3);
    const s1 = place(e, p1);
    const s2 = place(e, p2, true);
    const s3 = place(e, Buffer.concat([Buffer.alloc(PAGE - 16), p3])) + PAGE - 16;
    expect(update(e, g, s1, p1.length)).toBe(S.SUCCESS);
    expect(update(e, g, cbit(e, s2), p2.length)).toBe(S.SUCCESS);
    expect(update(e, g, s3, p3.length)).toBe(S.SUCCESS);
    // The plaintext was re-encrypted in place under the guest key.
    expect(mem.read(s1, p1.length, false).equals(p1)).toBe(false);
    expect(mem.read(s2, p2.length, true).equals(p2)).toBe(false);
    expect(mem.read(s3, p3.length, false).equals(p3)).toBe(false);

    const { status } = measure(e, g, { paddr: cbit(e, e.d.dataPage) });
    expect(status).toBe(S.SUCCESS);
    const out = LaunchMeasurement.decode(mem.read(e.d.dataPage, LaunchMeasurement.size, true));
    const ld = createHash('sha256').update(p1).update(p2).update(p3).digest();
    expect(out.measurement.equals(launchMeasurement(Buffer.alloc(16), fw, policy, ld, out.mnonce))).toBe(
      true,
    );
    // The order of the updates matters.
    const swapped = createHash('sha256').update(p2).update(p1).update(p3).digest();
    expect(out.measurement.equals(launchMeasurement(Buffer.alloc(16), fw, policy, swapped, out.mnonce))).toBe(
      false,
    );
  });

  it('no LAUNCH_UPDATE_DATA at all: LD = SHA256(""); output to a C=0 address is plaintext there', () => {
    const e = ready();
    const fw = e.platform.profile.firmware;
    const g = guestIn(e, 'LUPDATE', 0, 0x9);
    const dest = place(e, Buffer.alloc(PAGE));
    expect(measure(e, g, { paddr: dest }).status).toBe(S.SUCCESS);
    const out = LaunchMeasurement.decode(e.platform.soc.hostMemory.read(dest, LaunchMeasurement.size, false));
    expect(
      out.measurement.equals(
        launchMeasurement(Buffer.alloc(16), fw, 0x9, createHash('sha256').digest(), out.mnonce),
      ),
    ).toBe(true);
  });

  it('every LAUNCH_MEASURE draws a fresh mnonce; identical launches still verify', () => {
    const e = ready();
    const fw = e.platform.profile.firmware;
    const mem = e.platform.soc.hostMemory;
    const data = pattern(256, 5);
    const results = [100, 101].map((asid) => {
      const g = guestIn(e, 'LUPDATE', asid);
      expect(update(e, g, place(e, data), data.length)).toBe(S.SUCCESS);
      expect(measure(e, g).status).toBe(S.SUCCESS);
      return LaunchMeasurement.decode(mem.read(e.d.dataPage, LaunchMeasurement.size, true));
    });
    const [a, b] = results as [
      Decoded<typeof LaunchMeasurement.fields>,
      Decoded<typeof LaunchMeasurement.fields>,
    ];
    expect(a.mnonce.equals(b.mnonce)).toBe(false);
    expect(a.measurement.equals(b.measurement)).toBe(false);
    const ld = createHash('sha256').update(data).digest();
    for (const r of results)
      expect(r.measurement.equals(launchMeasurement(Buffer.alloc(16), fw, 0, ld, r.mnonce))).toBe(true);
  });
});

describe('reserved output bytes', () => {
  // Regression (once wrong in the model): PLATFORM_STATUS is CMD_BUF_OUTPUT_ONLY in ASPFW
  // (sev_dispatch.c master_handler_table): the handler memsets the buffer (sev_mcmd.c
  // sev_mcmd_platform_status) and 12 bytes are copied out, so the reserved byte at 0x06 is always 0.
  it('PLATFORM_STATUS writes 0 to the reserved byte 0x06 whatever the buffer held', () => {
    const e = ready();
    expect(issueBytes(e, SevCommand.PLATFORM_STATUS, Buffer.alloc(PlatformStatusBuffer.size, 0xff))).toBe(
      S.SUCCESS,
    );
    expect(e.platform.soc.hostMemory.read(e.scratch + 6, 1, true)[0]).toBe(0);
  });
});

describe('property: random mailbox traffic', () => {
  const implemented = [
    SevCommand.INIT,
    SevCommand.SHUTDOWN,
    SevCommand.PLATFORM_STATUS,
    SevCommand.DF_FLUSH,
    SevCommand.LAUNCH_START,
    SevCommand.LAUNCH_UPDATE_DATA,
    SevCommand.LAUNCH_MEASURE,
    SevCommand.LAUNCH_FINISH,
    SevCommand.ACTIVATE,
    SevCommand.DEACTIVATE,
    SevCommand.DECOMMISSION,
    SevCommand.GUEST_STATUS,
    SevCommand.DBG_DECRYPT,
    SevCommand.DBG_ENCRYPT,
    SevCommand.PLATFORM_RESET,
    SevCommand.PEK_GEN,
    SevCommand.PEK_CSR,
    SevCommand.PEK_CERT_IMPORT,
    SevCommand.PDH_GEN,
    SevCommand.PDH_CERT_EXPORT,
    SevCommand.GET_ID,
    SevCommand.LAUNCH_SECRET,
    SevCommand.ATTESTATION,
    SevCommand.LAUNCH_UPDATE_VMSA,
    SevCommand.SEND_START,
    SevCommand.SEND_UPDATE_DATA,
    SevCommand.SEND_UPDATE_VMSA,
    SevCommand.SEND_FINISH,
    SevCommand.SEND_CANCEL,
    SevCommand.RECEIVE_START,
    SevCommand.RECEIVE_UPDATE_DATA,
    SevCommand.RECEIVE_UPDATE_VMSA,
    SevCommand.RECEIVE_FINISH,
    SevCommand.SNP_INIT,
    SevCommand.SNP_PLATFORM_STATUS,
    SevCommand.SNP_DF_FLUSH,
    SevCommand.SNP_GCTX_CREATE,
    SevCommand.SNP_DECOMMISSION,
    SevCommand.SNP_ACTIVATE,
    SevCommand.SNP_GUEST_STATUS,
    SevCommand.SNP_GUEST_REQUEST,
    SevCommand.SNP_LAUNCH_START,
    SevCommand.SNP_LAUNCH_UPDATE,
    SevCommand.SNP_LAUNCH_FINISH,
    SevCommand.SNP_PAGE_RECLAIM,
    SevCommand.SNP_CONFIG,
    SevCommand.SNP_COMMIT,
  ];
  const GUEST_SCAN = 24;

  /** Platform and guest status as the host sees them, with the model's own view for cross-checking. */
  function observe(e: Env): {
    platform: Decoded<typeof PlatformStatusBuffer.fields>;
    guests: Decoded<typeof GuestStatusBuffer.fields>[];
  } {
    const platform = platformStatus(e);
    const guests =
      platform.state === PlatformState.UNINIT
        ? []
        : Array.from({ length: GUEST_SCAN }, (_, i) => guestStatus(e, i + 1).out);
    return { platform, guests };
  }

  function checkConsistent(e: Env, o: ReturnType<typeof observe>): void {
    const { platform: p, guests } = o;
    const fw = e.platform.profile.firmware;
    expect(p).toMatchObject({ apiMajor: fw.major, apiMinor: fw.minor, buildId: fw.build, owner: 0 });
    expect([PlatformState.UNINIT, PlatformState.INIT, PlatformState.WORKING]).toContain(p.state);
    expect([0, PLATFORM_CONFIG_ES]).toContain(p.config);
    if (p.state === PlatformState.UNINIT) expect(p).toMatchObject({ config: 0, guestCount: 0 });
    if (p.state === PlatformState.INIT) expect(p.guestCount).toBe(0);
    if (p.state === PlatformState.WORKING) expect(p.guestCount).toBeGreaterThan(0);
    const live = guests.filter((g) => g.state !== GuestState.UNINIT);
    if (p.state !== PlatformState.UNINIT) expect(live.length).toBe(p.guestCount);
    const asids = live.map((g) => g.asid).filter((a) => a !== 0);
    expect(new Set(asids).size).toBe(asids.length); // an ASID belongs to at most one guest
    for (const g of live) {
      expect([GuestState.LUPDATE, GuestState.LSECRET, GuestState.RUNNING]).toContain(g.state);
      expect(g.asid).toBeLessThanOrEqual(e.platform.profile.maxSevAsid);
      if (g.asid !== 0 && (g.policy & 0x4) !== 0) expect(g.asid).toBeLessThan(e.platform.profile.minSevAsid);
      if (g.asid !== 0 && (g.policy & 0x4) === 0)
        expect(g.asid).toBeGreaterThanOrEqual(e.platform.profile.minSevAsid);
    }
    const d = e.platform.psp.describe();
    expect(d.platformState).toBe(p.state);
    if (p.state !== PlatformState.UNINIT) expect(d.guests.length).toBe(p.guestCount);
  }

  const DRAM = 24 * 1024 * 1024;
  const C_BIT = 2 ** 51; // Milan
  // Random bytes, optionally overlaid with plausible values at the offsets every legacy buffer shares
  // (0x00 handle/flags, 0x04 policy/ASID, 0x08 address, 0x10 length), so that the random traffic also
  // gets past the early checks and succeeds often enough to move the state machines around.
  const op = fc.record({
    command: fc.oneof(
      { weight: 1, arbitrary: fc.integer({ min: 0, max: 0xff }) },
      { weight: 1, arbitrary: fc.constantFrom(...implemented.slice(0, 4)) },
      { weight: 4, arbitrary: fc.constantFrom(...implemented.slice(4)) },
    ),
    bytes: fc.uint8Array({ minLength: 0x40, maxLength: 0x40 }),
    w00: fc.option(fc.integer({ min: 0, max: 3 }), { freq: 5 }),
    w04: fc.option(
      fc.oneof(
        fc.integer({ min: 95, max: 110 }),
        fc.integer({ min: 0, max: 520 }),
        fc.constantFrom(0x1, 0x2, 0x4, 0x5, 0xffc0),
      ),
      { freq: 5 },
    ),
    q08: fc.option(
      fc.oneof(
        { weight: 3, arbitrary: fc.constant(0) },
        fc.integer({ min: 0, max: DRAM / 16 - 1 }).map((x) => x * 16),
        fc.integer({ min: 0, max: DRAM / 16 - 1 }).map((x) => x * 16 + C_BIT),
        fc.integer({ min: 0, max: DRAM / TMR_SIZE - 1 }).map((x) => x * TMR_SIZE),
      ),
      { freq: 5 },
    ),
    w10: fc.option(
      fc.oneof(fc.constantFrom(16, 0x30, PAGE, TMR_SIZE), fc.integer({ min: 0, max: 2 * PAGE })),
      { freq: 5 },
    ),
    encrypted: fc.boolean(),
  });

  it('never throws, always returns a known status, and keeps PLATFORM_STATUS consistent', () => {
    fc.assert(
      fc.property(
        fc.constantFrom('UNINIT', 'INIT', 'WORKING', 'WORKING'),
        fc.array(op, { minLength: 1, maxLength: 10 }),
        (start, ops) => {
          const platform = createPlatform({ seed: 1, dramBytes: DRAM });
          const hv = new Hypervisor(platform);
          const e: Env = { platform, hv, d: hv.driver, scratch: hv.frames.allocate() };
          if (start !== 'UNINIT') e.hv.initPlatform();
          if (start === 'WORKING') {
            running(e, 100);
            guestIn(e, 'LUPDATE', 101);
            guestIn(e, 'LSECRET', 0, encodeSevPolicy({ encryptedState: true }));
          }
          let before = observe(e);
          checkConsistent(e, before);
          for (const { command, bytes, w00, w04, q08, w10, encrypted } of ops) {
            const buf = Buffer.from(bytes);
            if (w00 !== null) buf.writeUInt32LE(w00, 0x00);
            if (w04 !== null) buf.writeUInt32LE(w04, 0x04);
            if (q08 !== null) buf.writeBigUInt64LE(BigInt(q08), 0x08);
            if (w10 !== null) buf.writeUInt32LE(w10, 0x10);
            const logLength = e.platform.psp.log.length;
            let status = -1;
            expect(() => {
              status = issueBytes(e, command, buf, encrypted);
            }).not.toThrow();
            expect(KNOWN_STATUS.has(status)).toBe(true);
            expect(e.platform.psp.log.length).toBe(logLength + 1);
            expect(e.platform.psp.log[logLength]).toEqual({ command, status });
            if (!implemented.includes(command as (typeof implemented)[number]))
              expect(status).toBe(S.INVALID_COMMAND);
            const after = observe(e);
            checkConsistent(e, after);
            const p0 = before.platform;
            const p1 = after.platform;
            if (status !== S.SUCCESS) {
              // A failed command changes nothing the host can see.
              expect(after).toEqual(before);
            } else if (command === SevCommand.INIT) {
              expect([p0.state, p1.state]).toEqual([PlatformState.UNINIT, PlatformState.INIT]);
            } else if (command === SevCommand.SHUTDOWN) {
              expect(p1.state).toBe(PlatformState.UNINIT);
            } else if (command === SevCommand.LAUNCH_START) {
              expect(p0.state).not.toBe(PlatformState.UNINIT);
              expect(p1).toMatchObject({ state: PlatformState.WORKING, guestCount: p0.guestCount + 1 });
            } else if (command === SevCommand.DECOMMISSION) {
              expect(p1.guestCount).toBe(p0.guestCount - 1);
              expect(p1.state).toBe(p1.guestCount === 0 ? PlatformState.INIT : PlatformState.WORKING);
            } else {
              expect(p1).toEqual(p0);
            }
            before = after;
          }
        },
      ),
      { numRuns: 150 },
    );
  });
});
