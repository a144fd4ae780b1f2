/*
 * Which MessagePack library backs `format: 'msgpack'`: msgpackr or @msgpack/msgpack, measured on the
 * medium tier's items (each item's envelope encoded and decoded on its own, as the store does), beside
 * compact JSON. Not part of `npm run bench`; run it when the choice is in question:
 *
 *   npx ts-node --transpile-only bench/msgpack-compare.ts [--rounds 7]
 *   MSGPACKR_NATIVE_ACCELERATION_DISABLED=true npx ts-node --transpile-only bench/msgpack-compare.ts
 *
 * Prints, per library (and compact JSON), the median over rounds of encode and decode time for every item and the total
 * bytes; every decoded envelope is checked against JSON.parse(JSON.stringify(envelope)).
 */
import 'reflect-metadata';
import { isDeepStrictEqual } from 'node:util';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { openBenchApp } from './bench.app';
import { TIERS, Workload } from './workload';

interface Codec {
  name: string;
  encode(value: unknown): Uint8Array;
  decode(data: Uint8Array): unknown;
}

async function codecs(): Promise<Codec[]> {
  const msgpackr = await import('msgpackr');
  const packr = new msgpackr.Packr({
    useRecords: false,
    moreTypes: false,
    int64AsType: 'number',
    mapsAsObjects: true,
  });
  const msgpack = await import('@msgpack/msgpack');
  const encoder = new msgpack.Encoder();
  const decoder = new msgpack.Decoder();
  return [
    {
      name: 'json (compact, for reference)',
      encode: (v) => Buffer.from(JSON.stringify(v), 'utf8'),
      decode: (d) => JSON.parse(Buffer.from(d).toString('utf8')) as unknown,
    },
    {
      name: `msgpackr ${msgpackr.isNativeAccelerationEnabled ? '(native string decoding)' : '(pure JS)'}`,
      encode: (v) => packr.pack(v),
      decode: (d) => packr.unpack(d) as unknown,
    },
    {
      name: '@msgpack/msgpack',
      encode: (v) => encoder.encode(v),
      decode: (d) => decoder.decode(d),
    },
  ];
}

function median(values: number[]): number {
  const sorted = [...values].sort((a, b) => a - b);
  return sorted[Math.floor(sorted.length / 2)];
}

async function main(): Promise<void> {
  const { values } = parseArgs({ options: { rounds: { type: 'string', default: '7' } } });
  const rounds = Number(values.rounds);
  const dir = await mkdtemp(join(tmpdir(), 'msgpack-compare-'));
  const app = await openBenchApp({ path: dir, loadOnBoot: false });
  const workload = new Workload(app, TIERS.medium);
  workload.fill();
  // The managers hand out Dates (revived on load); the store's msgpack serializer turns values into
  // their JSON data first, so the libraries are compared on that JSON data.
  const envelopes = workload
    .all()
    .map(([, id, value]) => JSON.parse(JSON.stringify({ id, v: 1, data: value })) as unknown);
  const expected = envelopes;
  await app.close();
  await rm(dir, { recursive: true, force: true });
  console.log(`medium tier: ${envelopes.length} items, median of ${rounds} rounds`);
  for (const codec of await codecs()) {
    const encodeMs: number[] = [];
    const decodeMs: number[] = [];
    let bytes = 0;
    for (let round = 0; round < rounds; round++) {
      let t = performance.now();
      const encoded = envelopes.map((e) => codec.encode(e));
      encodeMs.push(performance.now() - t);
      t = performance.now();
      const decoded = encoded.map((d) => codec.decode(d));
      decodeMs.push(performance.now() - t);
      bytes = encoded.reduce((sum, d) => sum + d.length, 0);
      if (round === 0 && !decoded.every((d, i) => isDeepStrictEqual(d, expected[i]))) {
        throw new Error(`${codec.name}: a decoded item differs from its JSON round trip`);
      }
    }
    console.log(
      `${codec.name.padEnd(36)} encode ${median(encodeMs).toFixed(1).padStart(7)} ms  decode ${median(decodeMs).toFixed(1).padStart(7)} ms  ${(bytes / 1024 / 1024).toFixed(2)} MiB`,
    );
  }
}

main().catch((error: unknown) => {
  console.error(error);
  process.exitCode = 1;
});
