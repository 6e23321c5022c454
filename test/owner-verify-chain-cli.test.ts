// `owner verify-chain` on a fresh commander Command: the real chains pass, wrong roots and broken files
// fail with a clear message (file, field, offset) and the right exit status, never a stack trace.
import { mkdtempSync, rmSync, symlinkSync, writeFileSync, readFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { Command, CommanderError } from 'commander';
import { afterAll, describe, expect, it, vi } from 'vitest';
import { addVerifyChainCommand } from '../src/cli/owner-verify-chain.js';

const TESTDATA = resolve(import.meta.dirname, '../../shared/testdata');
const ROOTS = join(TESTDATA, 'amd-roots');
const platform = (name: string): string => join(TESTDATA, 'sev-platform', name);

interface Run {
  out: string;
  err: string;
  exitCode: number;
}

function run(args: string[]): Run {
  let out = '';
  let err = '';
  const owner = new Command('owner')
    .exitOverride()
    .configureOutput({ writeOut: (s) => (out += s), writeErr: (s) => (err += s) });
  addVerifyChainCommand(owner);
  let exitCode = 0;
  // A broken chain is a verdict: the command writes its reason to stderr and sets process.exitCode.
  const stderr = vi.spyOn(process.stderr, 'write').mockImplementation((chunk: string | Uint8Array) => {
    err += typeof chunk === 'string' ? chunk : Buffer.from(chunk).toString();
    return true;
  });
  process.exitCode = undefined;
  try {
    owner.parse(['verify-chain', ...args], { from: 'user' });
    exitCode = Number(process.exitCode ?? 0);
  } catch (e) {
    if (!(e instanceof CommanderError)) throw e;
    exitCode = e.exitCode;
  } finally {
    stderr.mockRestore();
    process.exitCode = undefined;
  }
  expect(err).not.toMatch(/\n\s+at /); // no stack traces
  return { out, err, exitCode };
}

const scratch = mkdtempSync(join(tmpdir(), 'sevsim-verify-chain-'));
afterAll(() => rmSync(scratch, { recursive: true, force: true }));

/** A fresh chain directory: links to the real Naples files, some replaced (or left out, for null). */
function makeChain(name: string, replace: Record<string, Buffer | null>): string {
  const dir = mkdtempSync(join(scratch, `${name}-`));
  for (const file of ['cek.cert', 'oca.cert', 'pek.cert', 'pdh.cert']) {
    const r = replace[file];
    if (r === null) continue;
    if (r === undefined) symlinkSync(join(platform('naples'), file), join(dir, file));
    else writeFileSync(join(dir, file), r);
  }
  return dir;
}

describe('owner verify-chain', () => {
  it.each(['naples', 'rome'])('%s: finds the generation under --roots and passes every link', (gen) => {
    const r = run(['--roots', ROOTS, platform(gen)]);
    expect(r.exitCode).toBe(0);
    expect(r.err).toBe('');
    expect(r.out).toContain(`AMD roots: ${gen} (found by trying each generation's ASK`);
    expect(r.out.match(/^ {2}PASS /gm)).toHaveLength(7);
    expect(r.out).toMatch(/The chain verifies: all 7 links hold\./);
  });

  it('--json prints one object with every link', () => {
    const r = run(['--roots', ROOTS, '--json', platform('rome')]);
    expect(r.exitCode).toBe(0);
    const parsed = JSON.parse(r.out) as {
      ok: boolean;
      roots: { product: string };
      links: { name: string; ok: boolean; reason: string }[];
      broken: string[];
    };
    expect(parsed.ok).toBe(true);
    expect(parsed.roots.product).toBe('rome');
    expect(parsed.links.map((l) => l.name)).toEqual([
      'ARK → ARK',
      'ARK → ASK',
      'ASK → CEK',
      'CEK → PEK',
      'OCA → OCA',
      'OCA → PEK',
      'PEK → PDH',
    ]);
    expect(parsed.broken).toEqual([]);
  });

  it('--ark/--ask with the Rome roots on the Naples chain: exits 1 naming ASK → CEK', () => {
    const r = run([
      '--ark',
      join(ROOTS, 'rome/ark.cert'),
      '--ask',
      join(ROOTS, 'rome/ask.cert'),
      platform('naples'),
    ]);
    expect(r.exitCode).toBe(1);
    expect(r.out).toMatch(/FAIL {2}ASK → CEK {2}no signature slot by ASK \(0x13\) with RSA_SHA384/);
    expect(r.err).toBe('error: chain broken at ASK → CEK\n');
  });

  it('--product picks a generation instead of searching', () => {
    expect(run(['--roots', ROOTS, '--product', 'naples', platform('naples')]).exitCode).toBe(0);
    const r = run(['--roots', ROOTS, '--product', 'milan', platform('naples')]);
    expect(r.exitCode).toBe(1);
    expect(r.err).toMatch(/chain broken at ASK → CEK/);
  });

  it('no generation under --roots signs the CEK: the owner half is still checked', () => {
    const roots = mkdtempSync(join(scratch, 'roots-'));
    symlinkSync(join(ROOTS, 'rome'), join(roots, 'rome'));
    const r = run(['--roots', roots, '--json', platform('naples')]);
    expect(r.exitCode).toBe(1);
    const parsed = JSON.parse(r.out) as { links: { name: string; ok: boolean; reason: string }[] };
    expect(parsed.links.filter((l) => !l.ok).map((l) => l.name)).toEqual([
      'ARK → ARK',
      'ARK → ASK',
      'ASK → CEK',
    ]);
    expect(parsed.links[2]?.reason).toMatch(/no ASK under .* signs this CEK \(tried rome\)/);
  });

  it('the truncated Naples ARK does not verify', () => {
    const r = run([
      '--ark',
      join(ROOTS, 'naples/ark.cert.truncated'),
      '--ask',
      join(ROOTS, 'naples/ask.cert'),
      platform('naples'),
    ]);
    expect(r.exitCode).toBe(1);
    expect(r.out).toMatch(/FAIL {2}ARK → ARK {2}unsigned/);
  });

  it('a malformed certificate: the links it is in fail, and the error names file, field and offset', () => {
    const pek = Buffer.from(readFileSync(join(platform('naples'), 'pek.cert')));
    pek.writeUInt8(pek.readUInt8(0x14) ^ 0x01, 0x14); // QX no longer on the curve
    const dir = makeChain('bad-pek', { 'pek.cert': pek });
    const r = run(['--roots', ROOTS, dir]);
    expect(r.exitCode).toBe(1);
    expect(r.err).toContain('chain broken at CEK → PEK, OCA → PEK, PEK → PDH');
    expect(r.err).toContain('pek.cert: SEV certificate: field pubkey.qx at offset 0x14');
  });

  it('a truncated certificate names the field the end cuts', () => {
    const oca = readFileSync(join(platform('naples'), 'oca.cert')).subarray(0, 1000);
    const r = run(['--roots', ROOTS, makeChain('short-oca', { 'oca.cert': oca })]);
    expect(r.exitCode).toBe(1);
    expect(r.err).toContain(
      'oca.cert: SEV certificate: field pubkey at offset 0x10: buffer ends at 1000 bytes',
    );
  });

  it('a missing file exits 2 naming it', () => {
    const dir = makeChain('no-pdh', { 'pdh.cert': null });
    const r = run(['--roots', ROOTS, dir]);
    expect(r.exitCode).toBe(2);
    expect(r.err).toBe(`error: cannot read PDH certificate ${join(dir, 'pdh.cert')}: no such file\n`);
    expect(r.out).toBe('');
  });

  it('refuses inconsistent options with exit 2', () => {
    expect(run([platform('naples')]).err).toMatch(/give --roots DIR or --ark FILE and --ask FILE/);
    expect(run(['--ark', join(ROOTS, 'rome/ark.cert'), platform('naples')]).err).toMatch(
      /--ark and --ask go together/,
    );
    expect(run(['--product', 'rome', '--ark', 'a', '--ask', 'b', platform('naples')]).err).toMatch(
      /--product needs --roots/,
    );
    const r = run(['--roots', ROOTS, '--product', 'bulldozer', platform('naples')]);
    expect(r.exitCode).toBe(2);
    expect(r.err).toMatch(
      /no bulldozer\/ark.cert and ask.cert under .* \(found: genoa, milan, naples, rome, turin\)/,
    );
    expect(run(['--roots', join(scratch, 'nowhere'), platform('naples')]).exitCode).toBe(2);
  });
});
