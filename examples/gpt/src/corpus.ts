// The training text: generated, not downloaded, so the example runs offline and the same everywhere.
//
// The generator writes short stories about a fixed cast of characters. Each character has facts that
// stay true across the whole corpus (where they live, what they keep, what they like), and the
// sentences follow a small grammar, so there is structure for a model to learn beyond letter
// frequencies: a model that has learnt it predicts "lives in Harbor" after "Mara" far better than the
// unigram distribution does.

const NAMES = ['Mara', 'Tomas', 'Ines', 'Felix', 'Ada', 'Oskar', 'Lena', 'Ravi', 'Noor', 'Pavel', 'Iris', 'Hugo'];
const PLACES = ['Harbor', 'the old mill', 'Northfield', 'the valley', 'Stonebridge', 'the island', 'Eastgate', 'the forest'];
const PETS = ['a grey cat', 'a small dog', 'two goats', 'a parrot', 'a tortoise', 'three hens'];
const FOODS = ['bread', 'apples', 'soup', 'cheese', 'plums', 'rice', 'honey', 'fish'];
const ADJ = ['quiet', 'bright', 'cold', 'busy', 'narrow', 'green', 'windy', 'warm'];
const NOUNS = ['road', 'river', 'market', 'garden', 'bridge', 'field', 'house', 'boat'];
const VERBS = ['walked to', 'looked at', 'painted', 'cleaned', 'crossed', 'visited', 'left', 'found'];
const TIMES = ['In the morning', 'At noon', 'In the evening', 'Later that day', 'On Sunday', 'After the rain'];

/** A small seeded generator (mulberry32), so the corpus is identical on every machine. */
export function mulberry32(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

interface Character {
  name: string;
  home: string;
  pet: string;
  food: string;
  friend: string;
}

function pick<T>(rand: () => number, xs: readonly T[]): T {
  return xs[Math.floor(rand() * xs.length)]!;
}

function cast(rand: () => number): Character[] {
  return NAMES.map((name, i) => ({
    name,
    home: PLACES[i % PLACES.length]!,
    pet: PETS[(i * 5) % PETS.length]!,
    food: FOODS[(i * 3) % FOODS.length]!,
    friend: NAMES[(i + 1 + Math.floor(rand() * (NAMES.length - 1))) % NAMES.length]!,
  }));
}

function sentence(rand: () => number, c: Character): string {
  switch (Math.floor(rand() * 7)) {
    case 0:
      return `${c.name} lives in ${c.home}.`;
    case 1:
      return `${c.name} keeps ${c.pet}.`;
    case 2:
      return `${c.name} likes ${c.food} more than anything.`;
    case 3:
      return `${pick(rand, TIMES)}, ${c.name} ${pick(rand, VERBS)} the ${pick(rand, ADJ)} ${pick(rand, NOUNS)}.`;
    case 4:
      return `${c.name} and ${c.friend} shared some ${c.food}.`;
    case 5:
      return `The ${pick(rand, NOUNS)} near ${c.home} was ${pick(rand, ADJ)}.`;
    default:
      return `${c.friend} asked ${c.name} about ${c.pet.replace(/^(a|two|three) /, 'the ')}.`;
  }
}

/** Generates about `bytes` characters of text (ASCII) from `seed`. */
export function generateCorpus(bytes: number, seed = 1234): string {
  const rand = mulberry32(seed);
  const people = cast(rand);
  const parts: string[] = [];
  let size = 0;
  while (size < bytes) {
    const c = pick(rand, people);
    const n = 2 + Math.floor(rand() * 4);
    const story = Array.from({ length: n }, () => sentence(rand, c)).join(' ') + '\n';
    parts.push(story);
    size += story.length;
  }
  return parts.join('').slice(0, bytes);
}
