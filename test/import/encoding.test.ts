// DecodeToUtf8: the encoding of a CSV decided from its bytes, whatever way the file is cut
// into chunks (a read of the file may end in the middle of the character that decides).
import { Readable } from 'node:stream';
import { buffer } from 'node:stream/consumers';
import test from 'ava';
import { DecodeToUtf8, decodeWindows1252, type EncodingChoice } from '../../src/import/encoding.js';

async function decode(chunks: Buffer[], choice: EncodingChoice = 'auto'): Promise<{ text: string; d: DecodeToUtf8 }> {
  const d = new DecodeToUtf8('f.csv', choice);
  const out = await buffer(Readable.from(chunks, { objectMode: false }).pipe(d));
  return { text: out.toString('utf8'), d };
}

/** Every way of cutting `bytes` in two (and in one-byte chunks). */
function cuts(bytes: Buffer): Buffer[][] {
  const all: Buffer[][] = [[bytes], [...bytes].map((b) => Buffer.from([b]))];
  for (let i = 1; i < bytes.length; i++) all.push([bytes.subarray(0, i), bytes.subarray(i)]);
  return all;
}

test('UTF-8 and Windows-1252 are told apart by the first non-ASCII character, however the file is cut', async (t) => {
  const text = 'id,name\n1,Ana\n2,Peña Núñez\n';
  for (const [bytes, encoding] of [[Buffer.from(text, 'utf8'), 'utf-8'], [Buffer.from(text, 'latin1'), 'windows-1252']] as const) {
    for (const chunks of cuts(bytes)) {
      const r = await decode(chunks);
      t.is(r.text, text);
      t.is(r.d.encoding, encoding);
      t.is(r.d.source, 'content');
      t.is(r.d.decidedOnLine, 3);
    }
  }
});

test('a BOM decides (UTF-8, UTF-16LE, UTF-16BE), cut anywhere; ASCII alone is UTF-8', async (t) => {
  const text = 'id,name\n1,Ñandú 李\n';
  // (the BOM comes out as the UTF-8 BOM, which the parser drops)
  const cases: [Buffer, string, string][] = [
    [Buffer.concat([Buffer.from([0xef, 0xbb, 0xbf]), Buffer.from(text, 'utf8')]), 'utf-8', `\uFEFF${text}`],
    [Buffer.concat([Buffer.from([0xff, 0xfe]), Buffer.from(text, 'utf16le')]), 'utf-16le', `\uFEFF${text}`],
    [Buffer.concat([Buffer.from([0xfe, 0xff]), Buffer.from(text, 'utf16le').swap16()]), 'utf-16be', `\uFEFF${text}`],
  ];
  for (const [bytes, encoding, expected] of cases) {
    for (const chunks of cuts(bytes)) {
      const r = await decode(chunks);
      t.is(r.text, expected, encoding);
      t.like(r.d, { encoding, source: 'bom' });
    }
  }
  const ascii = await decode([Buffer.from('id,name\n1,Ana\n')]);
  t.like(ascii.d, { encoding: undefined, source: 'ascii' });
});

test('the last byte of the file starting a UTF-8 sequence it never finishes means Windows-1252', async (t) => {
  const r = await decode([Buffer.from('id,name\n1,Jos\xc3', 'latin1')]);
  t.is(r.text, 'id,name\n1,JosÃ');
  t.is(r.d.encoding, 'windows-1252');
});

test('a file read as UTF-8 that breaks UTF-8 later is refused with the offset and line', async (t) => {
  const bytes = Buffer.concat([Buffer.from('id,name\n1,José\n', 'utf8'), Buffer.from('2,Peña\n', 'latin1')]);
  for (const chunks of cuts(bytes)) {
    await t.throwsAsync(decode(chunks), { message: /mixes encodings: read as UTF-8 from its first non-ASCII character \(line 2\), it is not UTF-8 further on: invalid byte at offset 20, line 3;/ });
  }
  await t.throwsAsync(decode([bytes], 'utf-8'), { message: /f\.csv is not UTF-8: invalid byte at offset 20, line 3 \(save it as "CSV UTF-8"\); nothing was loaded$/ });
  const forced = await decode([bytes], 'windows-1252');
  t.is(forced.text, 'id,name\n1,JosÃ©\n2,Peña\n');
});

test('Windows-1252: Latin-1 but for 0x80-0x9F, the five bytes it leaves undefined decoded as U+FFFD', (t) => {
  // (not checked against TextDecoder('windows-1252'): Node 20's decodes it as Latin-1, 0x80 as U+0080)
  const all = decodeWindows1252(Buffer.from(Array.from({ length: 256 }, (_, i) => i)));
  t.is(all.length, 256);
  t.is(all.slice(0x80, 0xa0), '€\uFFFD‚ƒ„…†‡ˆ‰Š‹Œ\uFFFDŽ\uFFFD\uFFFD‘’“”•–—˜™š›œ\uFFFDžŸ');
  for (let i = 0; i < 256; i++) if (i < 0x80 || i >= 0xa0) t.is(all.charCodeAt(i), i, `0x${i.toString(16)}`);
  t.is(decodeWindows1252(Buffer.from([0x4d, 0x75, 0xf1, 0x6f, 0x7a, 0x20, 0x80, 0x93, 0x94, 0xd1, 0xe1])), 'Muñoz €“”Ñá');
});
