// The PSP's persistent storage: sealed, atomic, and crash-safe.
import { mkdtempSync, readFileSync, readdirSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { NvStorage, NvStorageError } from '../src/psp/nv-storage.js';

const chip = Buffer.alloc(32, 0x42);
const dir = (): string => mkdtempSync(join(tmpdir(), 'sevsim-nv-'));

describe('PSP non-volatile storage', () => {
  it('round-trips a record and survives a new instance (a restart)', () => {
    const d = dir();
    new NvStorage(d, chip).save('identity', Buffer.from('pek+pdh+oca'));
    expect(new NvStorage(d, chip).load('identity')?.toString()).toBe('pek+pdh+oca');
    expect(new NvStorage(d, chip).load('never-written')).toBeUndefined();
  });

  it('the file on disk does not contain the plaintext', () => {
    const d = dir();
    const secret = Buffer.from('private-key-material-0123456789abcdef');
    new NvStorage(d, chip).save('identity', secret);
    const raw = readFileSync(join(d, 'identity.nv'));
    expect(raw.indexOf(secret.subarray(0, 8))).toBe(-1);
  });

  for (const point of ['after-temp-write', 'before-rename'] as const) {
    it(`a crash ${point} leaves the previous record intact, and recovery removes the debris`, () => {
      const d = dir();
      const nv = new NvStorage(d, chip);
      nv.save('identity', Buffer.from('generation 1'));
      nv.crashNextSaveAt = point;
      expect(() => nv.save('identity', Buffer.from('generation 2'))).toThrow(/simulated power loss/);
      expect(readdirSync(d).some((n) => n.includes('.tmp-'))).toBe(true);
      const rebooted = new NvStorage(d, chip);
      expect(rebooted.load('identity')?.toString()).toBe('generation 1');
      expect(readdirSync(d).some((n) => n.includes('.tmp-'))).toBe(false);
      rebooted.save('identity', Buffer.from('generation 2'));
      expect(rebooted.load('identity')?.toString()).toBe('generation 2');
    });
  }

  it('a tampered record, a record of another chip, or a foreign file is a typed error', () => {
    const d = dir();
    new NvStorage(d, chip).save('identity', Buffer.from('x'.repeat(64)));
    const path = join(d, 'identity.nv');
    const good = readFileSync(path);
    expect(() => new NvStorage(d, Buffer.alloc(32, 1)).load('identity')).toThrow(NvStorageError);
    for (const at of [0, 10, 30, good.length - 1]) {
      const bad = Buffer.from(good);
      bad[at] = (bad[at] as number) ^ 1;
      writeFileSync(path, bad);
      expect(() => new NvStorage(d, chip).load('identity')).toThrow(NvStorageError);
    }
    writeFileSync(path, Buffer.from('hello'));
    expect(() => new NvStorage(d, chip).load('identity')).toThrow(/not a sealed record/);
  });

  it('erase removes a record (PLATFORM_RESET)', () => {
    const d = dir();
    const nv = new NvStorage(d, chip);
    nv.save('identity', Buffer.from('x'));
    nv.erase('identity');
    expect(nv.load('identity')).toBeUndefined();
  });
});
