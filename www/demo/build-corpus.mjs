// Builds the demo's corpus from WordNet 3.0 (Princeton University; WordNet 3.0 license,
// permissive: use, copy, modify and distribute with the notice kept), as Debian's package
// `wordnet-base` ships it: the most used senses (by tagged-sense count) of each of WordNet's
// topic files (noun.animal, noun.food, verb.motion, ...), so every topic is there, each a
// document "lemma, synonyms: gloss; examples".
// Usage: node www/demo/build-corpus.mjs WORDNET_DIR OUT.json [NOUNS] [VERBS]
import { readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';

const [dir, out, nouns = '1500', verbs = '500'] = process.argv.slice(2);
if (!dir || !out) {
  console.error('usage: node build-corpus.mjs WORDNET_DIR OUT.json [NOUNS] [VERBS]');
  process.exit(2);
}

async function senses(pos, file, count) {
  const index = await readFile(join(dir, `index.${file}`), 'latin1');
  const data = await readFile(join(dir, `data.${file}`));
  const lemmas = [];
  for (const line of index.split('\n')) {
    if (!line || line.startsWith(' ')) continue;
    const f = line.trim().split(' ');
    const pCnt = Number(f[3]);
    const tagged = Number(f[5 + pCnt]);
    const first = f[6 + pCnt];
    lemmas.push({ lemma: f[0], tagged, offset: Number(first) });
  }
  lemmas.sort((a, b) => b.tagged - a.tagged || a.lemma.localeCompare(b.lemma));
  // First sense of each lemma, grouped by topic file (lex_filenum), most used first.
  const byTopic = new Map();
  const seen = new Set();
  for (const { lemma, offset } of lemmas) {
    if (seen.has(offset)) continue;
    seen.add(offset);
    const end = data.indexOf(10, offset);
    const line = data.subarray(offset, end).toString('utf8');
    const [head, gloss] = line.split(' | ');
    const f = head.split(' ');
    const words = [];
    for (let i = 0, n = parseInt(f[3], 16); i < n; i++) words.push(f[4 + 2 * i].replace(/_/g, ' ').replace(/\(.*\)$/, ''));
    const word = lemma.replace(/_/g, ' ');
    const synonyms = words.filter((w) => w.toLowerCase() !== word);
    const text = `${[word, ...synonyms].join(', ')}: ${gloss.trim()}`;
    const topic = f[1];
    if (!byTopic.has(topic)) byTopic.set(topic, []);
    byTopic.get(topic).push({ id: `${pos}-${offset}`, text, metadata: { word, pos } });
  }
  // Round robin over the topics until `count` documents.
  const docs = [];
  const lists = [...byTopic.values()];
  for (let i = 0; docs.length < count && lists.some((l) => i < l.length); i++) {
    for (const l of lists) if (i < l.length && docs.length < count) docs.push(l[i]);
  }
  return docs;
}

const docs = [...(await senses('noun', 'noun', Number(nouns))), ...(await senses('verb', 'verb', Number(verbs)))];
await writeFile(
  out,
  JSON.stringify({
    source: 'WordNet 3.0, Princeton University (Debian package wordnet-base), WordNet 3.0 license',
    notice: 'WordNet 3.0 Copyright 2006 by Princeton University. All rights reserved.',
    docs,
  }),
);
console.error(`${out}: ${docs.length} documents`);
