// The product's core promise, for SEV-SNP: the keys of an SNP guest — its VEK and VMPCK0..3, drawn by the
// PSP from its 'psp-key-rng' DRBG at SNP_LAUNCH_START — and the chip's VCEK never leave the PSP (and the
// memory controller's key slot). The test regenerates them from the seed (the SME key at boot, then per
// SNP_LAUNCH_START a VEK and four VMPCKs; the VCEK from the seeded chip secret and the reported TCB),
// proves it holds the real ones (the VEK decrypts the secrets page from DRAM and finds the VMPCKs there,
// VMPCK0 opens the report the host relayed, the VCEK's public key verifies it and is the one the KDS
// certifies), then looks for any 8-byte piece of any of them, in either byte order and however printed,
// in everything the host can see: inspect/JSON of the platform, hypervisor and SnpVm, the mailbox log,
// error messages and exit reasons, the GHCB, shared and bounce pages, the guest's frames through every
// host mapping, the KDS's HTTP answers, the CLI's outputs, and all of DRAM after WBINVD.
import buffer from 'node:buffer';
import { X509Certificate, createPublicKey, type KeyObject } from 'node:crypto';
import { mkdtempSync, readFileSync, readdirSync, rmSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { inspect } from 'node:util';
import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest';
import {
  SNP_ID_AUTH_SIZE,
  SNP_ID_BLOCK_SIZE,
  SevCommand,
  SevStatus,
  SnpDbgBuffer,
  SnpGctxBuffer,
  SnpKeySel,
  SnpLaunchStartBuffer,
  SnpMsgType,
  VCPU_TYPES,
  cpuidSignature,
  decodeSnpKeyResponse,
  decodeSnpReport,
  decodeSnpReportResponse,
  decodeSnpSecretsPage,
  encodeSnpKeyRequest,
  encodeSnpReportRequest,
  encodeTcb,
  openSnpGuestMessage,
  parseOvmfFooter,
  sealSnpGuestMessage,
} from '../src/abi/index.js';
import { addKdsCommand } from '../src/cli/kds-command.js';
import { buildProgram } from '../src/cli/program.js';
import { runCli } from '../src/cli/run.js';
import { Drbg, MEMORY_KEY_MATERIAL_BYTES, createMemoryCipher, ecdsaP384Verify } from '../src/crypto/index.js';
import { SnpAttestationAgent } from '../src/guest/snp-attestation-agent.js';
import { Hypervisor, PspCommandError } from '../src/host/index.js';
import {
  type SnpVm,
  forwardGuestRequest,
  initSnpPlatform,
  launchSnpFirmware,
  runSnpGuest,
} from '../src/host/snp-launch.js';
import { computeLaunchDigest } from '../src/owner/launch-digest.js';
import { SimulatedKds, kdsCertChainPath, kdsVcekPath } from '../src/psp/index.js';
import { chipSecret } from '../src/psp/chip-fuses.js';
import { type Platform, createPlatform } from '../src/psp/platform.js';
import { simulatedAmdRoot } from '../src/psp/simulated-amd-root.js';
import { chipIdFromSecret, vcekHashStick, vcekPrivateKey } from '../src/psp/vcek.js';
import { HostRmpFault, PAGE_SIZE, type VmExit } from '../src/soc/index.js';

const SEED = 'snp-key-secrecy';
const OVMF_PATH = resolve(import.meta.dirname, '../../shared/testdata/ovmf/OVMF.fd');
const OVMF = readFileSync(OVMF_PATH);
const DRAM = 64 * 1024 * 1024;
const POLICY = 0x30000n;
const GHCB_GPA = 0x10_0000;
/** Pages of low RAM the test, speaking for the guest, uses for its own requests. */
const MY_REQUEST_GPA = 0x10_4000;
const MY_RESPONSE_GPA = 0x10_5000;
const footer = parseOvmfFooter(OVMF);
function sectionGpa(name: string): number {
  const s = (footer.sevMetadata?.sections ?? []).find((x) => x.typeName === name);
  if (s === undefined) throw new Error(`OVMF.fd has no ${name} section`);
  return s.gpa;
}
const SECRETS_GPA = sectionGpa('SNP_SECRETS');
const SEC_MEM_GPA = sectionGpa('SNP_SEC_MEM');
const LAUNCH_DIGEST = computeLaunchDigest({
  mode: 'snp',
  ovmf: OVMF,
  vcpus: 1,
  vcpuType: 'EPYC-Milan',
  guestFeatures: 0x1n,
}).digest;

// ---- the leak scanner ---------------------------------------------------------------------------------

interface Secret {
  readonly name: string;
  readonly bytes: Buffer;
}

/**
 * Finds any 8-byte piece of any secret, as stored or byte-reversed, in buffers — one pass per buffer,
 * keyed on each piece's first three bytes — and in text however a program prints bytes: raw, hex
 * (inspect's "<Buffer 3a 4f …>" too), decimal lists (JSON of a Buffer, inspect of a Uint8Array), base64
 * and base64url at every alignment.
 */
class LeakScanner {
  readonly #first = new Uint8Array(1 << 24);
  readonly #pieces = new Map<number, { name: string; piece: Buffer }[]>();
  /** Pieces starting with three zero bytes: found with indexOf, so zero memory is not a candidate. */
  readonly #zeroPrefixed: { name: string; piece: Buffer }[] = [];
  pieceCount = 0;

  constructor(secrets: readonly Secret[]) {
    for (const s of secrets) {
      for (const [form, bytes] of [
        ['', s.bytes],
        [' (byte-reversed)', Buffer.from(s.bytes).reverse()],
      ] as const) {
        for (let i = 0; i + 8 <= bytes.length; i++) {
          const piece = Buffer.from(bytes.subarray(i, i + 8));
          if (piece.every((b) => b === 0)) continue;
          const name = `${s.name}${form}[${i}..${i + 8})`;
          this.pieceCount++;
          const prefix = (piece[0] as number) | ((piece[1] as number) << 8) | ((piece[2] as number) << 16);
          if (prefix === 0) {
            this.#zeroPrefixed.push({ name, piece });
            continue;
          }
          this.#first[prefix] = 1;
          const list = this.#pieces.get(prefix) ?? [];
          list.push({ name, piece });
          this.#pieces.set(prefix, list);
        }
      }
    }
  }

  /** "piece at label+offset" for every occurrence of a piece in `buf`. */
  scan(label: string, buf: Uint8Array): string[] {
    const hits: string[] = [];
    const first = this.#first;
    const end = buf.length - 7;
    for (let i = 0; i < end; i++) {
      const prefix = (buf[i] as number) | ((buf[i + 1] as number) << 8) | ((buf[i + 2] as number) << 16);
      if (first[prefix] === 0) continue;
      for (const { name, piece } of this.#pieces.get(prefix) ?? [])
        if (Buffer.compare(piece, buf.subarray(i, i + 8)) === 0)
          hits.push(`${name} at ${label}+0x${i.toString(16)}`);
    }
    const whole = Buffer.from(buf.buffer, buf.byteOffset, buf.byteLength);
    for (const { name, piece } of this.#zeroPrefixed)
      for (let i = whole.indexOf(piece); i !== -1; i = whole.indexOf(piece, i + 1))
        hits.push(`${name} at ${label}+0x${i.toString(16)}`);
    return hits;
  }

  scanText(label: string, text: string): string[] {
    const views: [string, Buffer][] = [
      ['utf8', Buffer.from(text, 'utf8')],
      ['latin1', Buffer.from(text, 'latin1')],
    ];
    const stripped = text.replace(/\s+/g, '');
    for (const source of [text, stripped]) {
      for (const run of source.match(/[0-9a-fA-F]{16,}/g) ?? [])
        for (const shift of [0, 1])
          views.push(['hex', Buffer.from(run.slice(shift, run.length - ((run.length - shift) % 2)), 'hex')]);
      for (const run of source.match(/\d{1,3}(?:,\d{1,3}){7,}/g) ?? [])
        views.push(['decimal', Buffer.from(run.split(',').map((d) => Number(d) & 0xff))]);
      for (const run of source.match(/[A-Za-z0-9+/_-]{11,}/g) ?? [])
        for (const shift of [0, 1, 2, 3]) views.push(['base64', Buffer.from(run.slice(shift), 'base64')]);
    }
    return views.flatMap(([how, bytes]) => this.scan(`${label} (${how})`, bytes));
  }
}

const INSPECT = {
  showHidden: true,
  depth: Infinity,
  getters: true,
  maxArrayLength: Infinity,
  maxStringLength: Infinity,
  breakLength: Infinity,
} as const;

/** JSON of anything: cycles cut, bigints as decimal, byte arrays as hex, Maps and Sets as arrays. */
function json(value: unknown): string {
  const seen = new WeakSet<object>();
  return JSON.stringify(value, (_key, v: unknown) => {
    if (typeof v === 'bigint') return v.toString();
    if (ArrayBuffer.isView(v)) return Buffer.from(v.buffer, v.byteOffset, v.byteLength).toString('hex');
    if (v instanceof Map) return [...(v as Map<unknown, unknown>).entries()];
    if (v instanceof Set) return [...(v as Set<unknown>).values()];
    if (v !== null && typeof v === 'object') {
      if (seen.has(v)) return '[seen]';
      seen.add(v);
    }
    return v;
  });
}

function describeError(err: unknown): string {
  return err instanceof Error
    ? `${err.name}: ${err.message}\n${err.stack ?? ''}\n${inspect(err, INSPECT)}`
    : String(err);
}

/** Runs `sevsim …` in-process, collecting what it prints. */
async function sevsim(args: string[]): Promise<{ code: number; out: string }> {
  let out = '';
  const sink = (c: string | Uint8Array): boolean => {
    out += typeof c === 'string' ? c : Buffer.from(c).toString();
    return true;
  };
  const o = vi.spyOn(process.stdout, 'write').mockImplementation(sink);
  const e = vi.spyOn(process.stderr, 'write').mockImplementation(sink);
  try {
    const program = buildProgram();
    if (!program.commands.some((c) => c.name() === 'kds')) addKdsCommand(program);
    return { code: await runCli(args, program), out };
  } finally {
    o.mockRestore();
    e.mockRestore();
  }
}

function filesUnder(dir: string): string[] {
  return readdirSync(dir).flatMap((f) => {
    const p = join(dir, f);
    return statSync(p).isDirectory() ? filesUnder(p) : [p];
  });
}

// ---- the world: an attested SNP guest, a failed launch, a KDS, the CLI ------------------------------------

interface World {
  platform: Platform;
  hv: Hypervisor;
  snp: SnpVm;
  report: Buffer;
  /** The agent's response as the host relayed it (ciphertext under VMPCK0). */
  relayedResponse: Buffer;
  /** What the test, as the guest, got back under VMPCK0 (a derived key) and VMPCK1 (a VMPL1 report). */
  derivedKey: Buffer;
  vmpl1Report: Buffer;
  /** The guest whose SNP_LAUNCH_FINISH failed (its ID block does not verify), then decommissioned. */
  failedSecretsSpa: number;
  keys: {
    sme: Buffer;
    vek: Buffer;
    vmpck: Buffer[];
    failedVek: Buffer;
    failedVmpck: Buffer[];
    chip: Buffer;
    stick: Buffer;
    vcek: KeyObject;
    vcekScalar: Buffer;
    olderVcekScalar: Buffer;
  };
  secrets: Secret[];
  /** Host-visible text (inspect, JSON, logs, errors, exits, CLI output) and bytes (pages, KDS bodies, files). */
  texts: { label: string; text: string }[];
  blobs: { label: string; bytes: Buffer }[];
  kdsVcek: Buffer;
  cliReport: Buffer;
  cliDigest: string;
}

const OLDER_TCB = encodeTcb({ layout: 'milan-genoa', bootloader: 1, tee: 0, snp: 1, microcode: 100 });
const dirs: string[] = [];
let world: World;
const inspectMaxBytes = buffer.INSPECT_MAX_BYTES;

function scalarOf(key: KeyObject): Buffer {
  return Buffer.from(String(key.export({ format: 'jwk' }).d), 'base64url');
}

/** As the guest: a sealed request under VMPCK `index` relayed by the host; the opened answer's payload. */
function asGuest(
  w: { hv: Hypervisor; snp: SnpVm },
  vmpck: Buffer,
  index: number,
  seqno: bigint,
  type: number,
  payload: Buffer,
): Buffer {
  const req = sealSnpGuestMessage({ vmpck, vmpckIndex: index, seqno, type, version: 1, payload });
  const page = Buffer.alloc(PAGE_SIZE);
  req.copy(page);
  w.hv.soc.hostMemory.write(w.snp.vm.spaOf(MY_REQUEST_GPA), page, false);
  expect(forwardGuestRequest(w.hv, w.snp, MY_REQUEST_GPA, MY_RESPONSE_GPA)).toBe(SevStatus.SUCCESS);
  const opened = openSnpGuestMessage(
    w.hv.soc.hostMemory.read(w.snp.vm.spaOf(MY_RESPONSE_GPA), PAGE_SIZE, false),
    vmpck,
  );
  if (!opened.ok) throw new Error('the answer does not open under the regenerated VMPCK');
  expect(opened.header.msgSeqno).toBe(seqno + 1n);
  return opened.payload;
}

beforeAll(async () => {
  buffer.INSPECT_MAX_BYTES = Infinity;
  const platform = createPlatform({ product: 'milan', seed: SEED, dramBytes: DRAM });
  const hv = new Hypervisor(platform);
  initSnpPlatform(hv);
  const mem = platform.soc.hostMemory;
  const agentOptions = {
    paging: platform.soc.paging,
    secretsGpa: SECRETS_GPA,
    pageTableGpa: SEC_MEM_GPA,
    sharedGpa: GHCB_GPA,
    reportData: Buffer.alloc(64, 0x5a),
  };
  const launch = (
    name: string,
    idBlock?: { block: Buffer; auth: Buffer; authorKey: boolean },
  ): { snp: SnpVm; agent: SnpAttestationAgent } => {
    const agent = new SnpAttestationAgent(OVMF, agentOptions);
    const snp = launchSnpFirmware(hv, {
      name,
      memoryBytes: 9 * 1024 * 1024,
      firmware: OVMF,
      software: agent,
      policy: POLICY,
      vcpus: 1,
      vcpuSignature: cpuidSignature(VCPU_TYPES['EPYC-Milan']),
      guestFeatures: 0x1n,
      ...(idBlock !== undefined ? { idBlock } : {}),
    });
    return { snp, agent };
  };

  // The guest: launched, run; its agent reads VMPCK0 from the secrets page and attests.
  const { snp, agent } = launch('snp-secrecy');
  const exits: VmExit[] = [...runSnpGuest(hv, snp)];
  expect(agent.problem).toBeUndefined();
  const relayedResponse = mem.read(snp.vm.spaOf(GHCB_GPA + 2 * PAGE_SIZE), PAGE_SIZE, false);

  // The key stream: the SME key at boot, then this guest's VEK and VMPCK0..3, then the second guest's.
  const stream = Drbg.fromSeed(SEED, 'psp-key-rng');
  const sme = stream.generate(MEMORY_KEY_MATERIAL_BYTES);
  const vek = stream.generate(MEMORY_KEY_MATERIAL_BYTES);
  const vmpck = [0, 1, 2, 3].map(() => stream.generate(32));
  const vmrk = stream.generate(32);
  const failedVek = stream.generate(MEMORY_KEY_MATERIAL_BYTES);
  const failedVmpck = [0, 1, 2, 3].map(() => stream.generate(32));
  const failedVmrk = stream.generate(32);
  const opened = openSnpGuestMessage(relayedResponse, vmpck[0] as Buffer);
  if (!opened.ok) throw new Error('the relayed response does not open under the regenerated VMPCK0');
  const report = decodeSnpReportResponse(opened.payload).report;
  expect(report).toEqual(agent.report);
  const tcb = decodeSnpReport(report).reportedTcb;
  const chip = chipSecret(SEED, undefined);
  const vcek = vcekPrivateKey(chip, 'milan', tcb);

  // As the guest: a derived key (VMPCK0, sequence 3) and a VMPL1 report (VMPCK1, sequence 1).
  const keyRsp = decodeSnpKeyResponse(
    asGuest(
      { hv, snp },
      vmpck[0] as Buffer,
      0,
      3n,
      SnpMsgType.KEY_REQ,
      encodeSnpKeyRequest({
        rootKeySelect: 0,
        keySel: 0,
        guestFieldSelect: 0x3fn & ~0x20n,
        vmpl: 0,
        guestSvn: 0,
        tcbVersion: 0n,
      }),
    ),
  );
  expect(keyRsp.status).toBe(SevStatus.SUCCESS);
  const vmpl1 = decodeSnpReportResponse(
    asGuest(
      { hv, snp },
      vmpck[1] as Buffer,
      1,
      1n,
      SnpMsgType.REPORT_REQ,
      encodeSnpReportRequest({ reportData: Buffer.alloc(64, 1), vmpl: 1, keySel: SnpKeySel.VCEK_ONLY }),
    ),
  );
  expect(vmpl1.status).toBe(SevStatus.SUCCESS);

  // Errors and refusals, as the host meets them.
  const errors: string[] = [];
  const attempt = (what: string, f: () => unknown): void => {
    try {
      errors.push(`${what}: ${inspect(f(), INSPECT)}`);
    } catch (err) {
      errors.push(`${what}: ${describeError(err)}`);
    }
  };
  attempt('SNP_LAUNCH_START of the running guest', () =>
    hv.driver.call(SevCommand.SNP_LAUNCH_START, SnpLaunchStartBuffer, {
      gctxPaddr: BigInt(snp.gctx),
      policy: POLICY,
    }),
  );
  attempt('SNP_DECOMMISSION of the VMCB', () =>
    hv.driver.call(SevCommand.SNP_DECOMMISSION, SnpGctxBuffer, { gctxPaddr: BigInt(snp.vm.vmcb) }),
  );
  attempt('SNP_DBG_DECRYPT of the secrets page', () =>
    hv.driver.call(SevCommand.SNP_DBG_DECRYPT, SnpDbgBuffer, {
      gctxPaddr: BigInt(snp.gctx),
      srcPaddr: BigInt(snp.vm.spaOf(SECRETS_GPA)),
      dstPaddr: BigInt(hv.driver.dataPage),
    }),
  );
  attempt('host write to the secrets page', () =>
    mem.write(snp.vm.spaOf(SECRETS_GPA), Buffer.alloc(16), false),
  );
  attempt('a replayed request (my VMPCK1 one)', () =>
    forwardGuestRequest(hv, snp, MY_REQUEST_GPA, MY_RESPONSE_GPA),
  );
  attempt('the guest, run again after it halted', () => {
    const again = runSnpGuest(hv, snp);
    exits.push(...again);
    return again;
  });
  // A second guest whose ID block does not verify: SNP_LAUNCH_FINISH fails after its LAUNCH_START drew
  // a VEK and four VMPCKs and its secrets page was written; then the host decommissions it.
  let launchError: unknown;
  try {
    launch('snp-bad-id-block', {
      block: Buffer.alloc(SNP_ID_BLOCK_SIZE, 0x42),
      auth: Buffer.alloc(SNP_ID_AUTH_SIZE, 0x17),
      authorKey: false,
    });
  } catch (err) {
    launchError = err;
  }
  expect(launchError).toBeInstanceOf(PspCommandError);
  errors.push(`launch with a bad ID block: ${describeError(launchError)}`);
  const failedVm = hv.vms[hv.vms.length - 1];
  if (failedVm === undefined || failedVm === snp.vm) throw new Error('the failed launch left no VM');
  const failedSecretsSpa = failedVm.spaOf(SECRETS_GPA);
  const failedGctx = platform.soc
    .rmpAssignedPages()
    .find((p) => p.entry.vmsa && p.entry.asid === 0 && p.entry.assigned && p.spa !== snp.gctx)?.spa;
  if (failedGctx === undefined) throw new Error('the failed launch left no context page');
  attempt('SNP_DECOMMISSION of the failed guest', () =>
    hv.driver.call(SevCommand.SNP_DECOMMISSION, SnpGctxBuffer, { gctxPaddr: BigInt(failedGctx) }),
  );
  expect(errors.filter((e) => /PspCommandError/.test(e))).toHaveLength(4);
  expect(errors.some((e) => e.includes(HostRmpFault.name))).toBe(true);

  // AMD's KDS for this chip: certificate chains, VCEKs, refusals.
  const kds = new SimulatedKds({ root: simulatedAmdRoot() });
  const chipInfo = kds.registerSeededChip(SEED, 'milan');
  const hwId = Buffer.from(chipInfo.hwId, 'hex');
  const requests: [string, string, number][] = [
    ['GET', kdsCertChainPath('milan'), 200],
    ['GET', kdsCertChainPath('genoa'), 200],
    ['GET', kdsCertChainPath('turin'), 200],
    ['GET', kdsVcekPath('milan', hwId, tcb), 200],
    ['HEAD', kdsVcekPath('milan', hwId, tcb), 200],
    ['GET', kdsVcekPath('milan', hwId, OLDER_TCB), 200],
    ['GET', `/vcek/v1/Milan/${'00'.repeat(64)}?blSPL=0&teeSPL=0&snpSPL=0&ucodeSPL=0`, 404],
    ['GET', `/vcek/v1/Milan/${chipInfo.hwId}?blSPL=1`, 400],
    ['GET', `/vcek/v1/Milan/${chipInfo.hwId}?blSPL=300&teeSPL=0&snpSPL=0&ucodeSPL=0`, 400],
    ['GET', `/vcek/v1/Turin/${chipInfo.hwId}?blSPL=1&teeSPL=0&snpSPL=0&ucodeSPL=0`, 400],
    ['POST', kdsCertChainPath('milan'), 405],
    ['GET', '/vcek/v1/Milan/crl', 404],
    ['GET', '/vlek/v1/Milan/cert_chain', 404],
    ['GET', '/vcek/v1/Rome/cert_chain', 404],
  ];
  const texts: World['texts'] = [];
  const blobs: World['blobs'] = [];
  let kdsVcek: Buffer = Buffer.alloc(0);
  for (const [method, path, expected] of requests) {
    const answer = kds.handle(method, path);
    expect(answer.status, `${method} ${path}`).toBe(expected);
    texts.push({
      label: `KDS ${method} ${path}`,
      text: `${answer.status} ${json(answer.headers)} ${answer.body.toString('latin1')}`,
    });
    blobs.push({ label: `KDS ${method} ${path}`, bytes: answer.body });
    if (method === 'GET' && path === kdsVcekPath('milan', hwId, tcb)) kdsVcek = answer.body;
  }
  texts.push({ label: 'inspect(KDS)', text: `${inspect(kds, INSPECT)} ${json(kds)} ${json(kds.chips)}` });

  // The CLI: what `owner measure --mode snp`, `kds --export` and `launch --mode snp` print and write.
  const measure = await sevsim([
    'owner',
    'measure',
    '--mode',
    'snp',
    '--ovmf',
    OVMF_PATH,
    '--vcpus',
    '1',
    '--vcpu-type',
    'EPYC-Milan',
  ]);
  expect(measure.code).toBe(0);
  const measureJson = await sevsim([
    'owner',
    'measure',
    '--mode',
    'snp',
    '--ovmf',
    OVMF_PATH,
    '--vcpus',
    '1',
    '--vcpu-type',
    'EPYC-Milan',
    '--json',
  ]);
  expect(measureJson.code).toBe(0);
  const measureError = await sevsim([
    'owner',
    'measure',
    '--mode',
    'snp',
    '--ovmf',
    OVMF_PATH,
    '--vcpus',
    '1',
  ]);
  expect(measureError.code).not.toBe(0);
  const exportDir = mkdtempSync(join(tmpdir(), 'sevsim-snp-secrecy-roots-'));
  const launchDir = mkdtempSync(join(tmpdir(), 'sevsim-snp-secrecy-launch-'));
  dirs.push(exportDir, launchDir);
  const exported = await sevsim(['kds', '--export', exportDir]);
  expect(exported.code).toBe(0);
  const launched = await sevsim([
    'launch',
    '--mode',
    'snp',
    '--ovmf',
    OVMF_PATH,
    '--seed',
    SEED,
    '--out',
    launchDir,
    '--json',
  ]);
  expect(launched.code, launched.out).toBe(0);
  for (const [label, out] of [
    ['owner measure --mode snp', measure.out],
    ['owner measure --mode snp --json', measureJson.out],
    ['owner measure --mode snp (refused)', measureError.out],
    ['kds --export', exported.out],
    ['launch --mode snp --json', launched.out],
  ] as const)
    texts.push({ label, text: out });
  for (const file of [...filesUnder(exportDir), ...filesUnder(launchDir)]) {
    const bytes = readFileSync(file);
    blobs.push({ label: file, bytes });
    texts.push({ label: file, text: bytes.toString('latin1') });
  }

  // Host-visible memory: the guest's shared pages (GHCB, the agent's and my message pages), the bounce
  // pages, and every frame of the guest through DRAM and both host mappings.
  blobs.push({ label: 'shared pages', bytes: mem.read(snp.vm.spaOf(GHCB_GPA), 6 * PAGE_SIZE, false) });
  blobs.push({ label: 'bounce request page', bytes: mem.read(snp.bounce.request, PAGE_SIZE, false) });
  blobs.push({ label: 'bounce response page', bytes: mem.read(snp.bounce.response, PAGE_SIZE, false) });
  blobs.push({ label: 'relayed response', bytes: relayedResponse });
  for (const vm of hv.vms) {
    const frames = [...vm.frames.values()];
    blobs.push({
      label: `${vm.name} frames, C=0`,
      bytes: Buffer.concat(frames.map((f) => mem.read(f, PAGE_SIZE, false))),
    });
    // Through the SME key (C=1): the pages that held secrets or were written by the PSP or the guest.
    const private_ = [SECRETS_GPA, ...Array.from({ length: 0x20 }, (_, i) => 0x80_0000 + i * PAGE_SIZE)];
    blobs.push({
      label: `${vm.name} launched pages, C=1`,
      bytes: Buffer.concat(private_.map((gpa) => mem.read(vm.spaOf(gpa), PAGE_SIZE, true))),
    });
  }
  for (const c of [false, true]) {
    blobs.push({ label: `VMSA, C=${+c}`, bytes: mem.read(snp.vmsas[0] as number, PAGE_SIZE, c) });
    blobs.push({ label: `context page, C=${+c}`, bytes: mem.read(snp.gctx, PAGE_SIZE, c) });
  }

  // Host-visible objects, logs, exit reasons, errors.
  texts.push(
    { label: 'inspect(platform)', text: inspect(platform, INSPECT) },
    { label: 'inspect(hypervisor)', text: inspect(hv, INSPECT) },
    { label: 'inspect(SnpVm)', text: inspect(snp, INSPECT) },
    { label: 'JSON(platform)', text: json(platform) },
    { label: 'JSON(hypervisor)', text: json(hv) },
    { label: 'JSON(SnpVm)', text: json(snp) },
    { label: 'mailbox log', text: json(platform.psp.log) },
    { label: 'PSP describe()', text: json(platform.psp.describe()) },
    { label: 'RMP', text: json(platform.soc.rmpAssignedPages()) },
    {
      label: 'exits',
      text: `${inspect(exits, INSPECT)} ${json(exits)} ${inspect(
        hv.vms.map((v) => v.exits),
        INSPECT,
      )}`,
    },
    { label: 'errors', text: errors.join('\n') },
  );

  const keys = {
    sme,
    vek,
    vmpck,
    failedVek,
    failedVmpck,
    chip,
    stick: vcekHashStick(chip, 'milan', tcb),
    vcek,
    vcekScalar: scalarOf(vcek),
    olderVcekScalar: scalarOf(vcekPrivateKey(chip, 'milan', OLDER_TCB)),
  };
  const secrets: Secret[] = [
    { name: 'VEK', bytes: vek },
    ...vmpck.map((bytes, i) => ({ name: `VMPCK${i}`, bytes })),
    { name: 'VCEK private scalar', bytes: keys.vcekScalar },
    { name: 'VCEK private scalar at an older TCB', bytes: keys.olderVcekScalar },
    { name: 'VCEK hash stick', bytes: keys.stick },
    { name: 'chip secret', bytes: chip },
    { name: 'SME key', bytes: sme },
    { name: 'failed guest’s VEK', bytes: failedVek },
    ...failedVmpck.map((bytes, i) => ({ name: `failed guest’s VMPCK${i}`, bytes })),
    { name: 'VMRK', bytes: vmrk },
    { name: 'failed guest’s VMRK', bytes: failedVmrk },
    { name: 'derived key (MSG_KEY_RSP)', bytes: keyRsp.derivedKey },
  ];
  world = {
    platform,
    hv,
    snp,
    report,
    relayedResponse,
    derivedKey: keyRsp.derivedKey,
    vmpl1Report: vmpl1.report,
    failedSecretsSpa,
    keys,
    secrets,
    texts,
    blobs,
    kdsVcek,
    cliReport: readFileSync(join(launchDir, 'report.bin')),
    cliDigest: measure.out.trim(),
  };
});

afterAll(() => {
  buffer.INSPECT_MAX_BYTES = inspectMaxBytes;
  for (const d of dirs) rmSync(d, { recursive: true, force: true });
});

describe('SNP keys never leave the PSP', () => {
  it('the leak scanner finds a piece of a key however it is printed or stored', () => {
    const key = Buffer.from('00112233445566778899aabbccddeeff0123456789abcdef', 'hex');
    const s = new LeakScanner([{ name: 'k', bytes: key }]);
    expect(s.pieceCount).toBe(2 * (key.length - 7));
    const piece = key.subarray(5, 13);
    const haystack = Buffer.alloc(1 << 20, 0x5c);
    piece.copy(haystack, 0x7_0003);
    Buffer.from(piece).reverse().copy(haystack, 0x9_0001);
    expect(s.scan('h', haystack)).toEqual([
      'k[5..13) at h+0x70003',
      'k (byte-reversed)[11..19) at h+0x90001',
    ]);
    expect(s.scan('h', Buffer.alloc(1 << 16))).toEqual([]);
    for (const printed of [
      inspect({ k: piece }, INSPECT),
      inspect(new Uint8Array(piece), INSPECT),
      JSON.stringify({ k: piece }),
      json({ k: piece }),
      `x${piece.toString('hex').toUpperCase()}`,
      `0${piece.toString('hex')}`,
      piece.toString('base64'),
      Buffer.concat([Buffer.from([1]), piece]).toString('base64url'),
      Buffer.concat([Buffer.from([1, 2]), piece]).toString('base64'),
      Buffer.concat([Buffer.from('<'), piece]).toString('latin1'),
    ])
      expect(s.scanText('t', printed), printed).not.toEqual([]);
    expect(s.scanText('t', inspect({ other: Buffer.alloc(32, 7) }, INSPECT))).toEqual([]);
    // A zero-prefixed piece is found too, without zero memory matching it.
    const z = new LeakScanner([{ name: 'z', bytes: Buffer.from('000000aabbccddee', 'hex') }]);
    const zh = Buffer.alloc(4096);
    Buffer.from('000000aabbccddee', 'hex').copy(zh, 100);
    expect(z.scan('zh', zh)).toEqual(['z[0..8) at zh+0x64']);
  });

  it('the regenerated keys are the real ones: the VEK decrypts the secrets pages to the VMPCKs, VMPCK0 opens the relayed report, the VCEK verifies it and is the KDS’s', () => {
    const { platform, snp, keys, report } = world;
    const soc = platform.soc;
    soc.hostMemory.wbinvd();
    // The VEK decrypts the secrets page the PSP wrote: version 3 and the four VMPCKs.
    for (const [spa, vek, vmpck] of [
      [snp.vm.spaOf(SECRETS_GPA), keys.vek, keys.vmpck],
      [world.failedSecretsSpa, keys.failedVek, keys.failedVmpck],
    ] as const) {
      const ct = soc.dram.read(spa, PAGE_SIZE);
      const plain = createMemoryCipher('xex', Buffer.from(vek)).decrypt(spa, ct);
      const page = decodeSnpSecretsPage(plain);
      expect(page.version).toBe(3);
      expect(page.vmpck).toEqual(vmpck);
      // …and DRAM holds it only encrypted.
      expect(ct.equals(plain)).toBe(false);
      expect(ct.indexOf((vmpck[0] as Buffer).subarray(0, 8))).toBe(-1);
    }
    // VMPCK0 opens the response the host relayed: the report is MEASUREMENT-correct and VCEK-signed.
    const relayed = openSnpGuestMessage(world.relayedResponse, keys.vmpck[0] as Buffer);
    expect(relayed.ok).toBe(true);
    if (relayed.ok) expect(decodeSnpReportResponse(relayed.payload).report).toEqual(report);
    for (const other of keys.vmpck.slice(1))
      expect(openSnpGuestMessage(world.relayedResponse, other).ok).toBe(false);
    const decoded = decodeSnpReport(report);
    expect(decoded.measurement).toEqual(LAUNCH_DIGEST);
    const sig = { r: decoded.signatureR, s: decoded.signatureS };
    expect(ecdsaP384Verify(createPublicKey(keys.vcek), 'sha384', report.subarray(0, 0x2a0), sig)).toBe(true);
    // VMPCK1 got a VMPL1 report; VMPCK0 a derived key.
    expect(decodeSnpReport(world.vmpl1Report).vmpl).toBe(1);
    expect(world.derivedKey).not.toEqual(Buffer.alloc(32));
    // The chip secret names the chip; the regenerated VCEK is the one the KDS certifies.
    expect(decoded.chipId).toEqual(chipIdFromSecret(keys.chip));
    const certified = new X509Certificate(world.kdsVcek).publicKey.export({ format: 'jwk' });
    expect(certified).toEqual(createPublicKey(keys.vcek).export({ format: 'jwk' }));
    expect(keys.vcekScalar).toHaveLength(48);
    // The SME key decrypts the host's own encrypted pages (the VMCB).
    const vmcb = snp.vm.vmcb;
    expect(
      createMemoryCipher('xex', Buffer.from(keys.sme)).decrypt(vmcb, soc.dram.read(vmcb, PAGE_SIZE)),
    ).toEqual(soc.hostMemory.read(vmcb, PAGE_SIZE, true));
    // `launch --mode snp --seed` ran a platform with these very keys: its report verifies with this VCEK.
    const cli = decodeSnpReport(world.cliReport);
    expect(cli.measurement).toEqual(LAUNCH_DIGEST);
    expect(
      ecdsaP384Verify(createPublicKey(keys.vcek), 'sha384', world.cliReport.subarray(0, 0x2a0), {
        r: cli.signatureR,
        s: cli.signatureS,
      }),
    ).toBe(true);
    expect(world.cliDigest).toBe(LAUNCH_DIGEST.toString('hex'));
  });

  it('no inspect or JSON of the platform, hypervisor or SnpVm, no mailbox log, error or exit reason, KDS answer or CLI output holds a piece of a key', () => {
    const scanner = new LeakScanner(world.secrets);
    expect(scanner.pieceCount).toBeGreaterThan(700);
    // Non-vacuity: hundreds of kilobytes of host-visible text are searched (SnpVm no longer carries the
    // guest image since AP creation names the VMCB to copy, which shrank it).
    const total = world.texts.reduce((n, t) => n + t.text.length, 0);
    expect(total).toBeGreaterThan(500_000);
    for (const label of [
      'inspect(platform)',
      'inspect(hypervisor)',
      'JSON(platform)',
      'mailbox log',
      'errors',
    ])
      expect(world.texts.find((t) => t.label === label)?.text.length ?? 0, label).toBeGreaterThan(100);
    const hits = world.texts.flatMap(({ label, text }) => scanner.scanText(label, text));
    expect(hits).toEqual([]);
  });

  it('no host-visible page (GHCB, shared, bounce, the guests’ frames through DRAM and both host mappings), KDS body or CLI file holds a piece of a key', () => {
    const scanner = new LeakScanner(world.secrets);
    expect(world.blobs.length).toBeGreaterThan(20);
    const hits = world.blobs.flatMap(({ label, bytes }) => scanner.scan(label, bytes));
    expect(hits).toEqual([]);
  });

  it('after WBINVD, no byte of DRAM holds a piece of a key: the secrets pages are there only as ciphertext', () => {
    const { platform } = world;
    platform.soc.hostMemory.wbinvd();
    const scanner = new LeakScanner(world.secrets);
    const dram = platform.soc.dram.read(0, DRAM);
    expect(platform.soc.dram.populatedPages).toBeGreaterThan(1000);
    expect(scanner.scan('DRAM', dram)).toEqual([]);
    // The DRAM's own scan agrees for the first and last piece of each guest key.
    for (const k of [world.keys.vek, ...world.keys.vmpck, world.keys.vcekScalar])
      for (const piece of [k.subarray(0, 8), k.subarray(k.length - 8)])
        expect(platform.soc.dram.scan(piece)).toEqual([]);
    // Non-vacuity: a piece of VMPCK0 the host stores in plaintext is found, at its physical address.
    const frame = world.hv.frames.allocate();
    platform.soc.hostMemory.write(frame + 0x123, (world.keys.vmpck[0] as Buffer).subarray(9, 17), false);
    platform.soc.hostMemory.wbinvd();
    expect(scanner.scan('DRAM', platform.soc.dram.read(0, DRAM))).toEqual([
      `VMPCK0[9..17) at DRAM+0x${(frame + 0x123).toString(16)}`,
    ]);
    platform.soc.hostMemory.write(frame, Buffer.alloc(PAGE_SIZE), false);
    platform.soc.hostMemory.wbinvd();
  });
});
