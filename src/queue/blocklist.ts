/**
 * Prompt blocklists: words/phrases and regular expressions, matched by our own linear-time engine.
 *
 * Why not `RegExp`: V8's engine backtracks, and admins type the patterns. Even `a*a*b` takes over a minute on a
 * 6,000-character prompt (the Discord option limit), `(a+)+$` far longer. Here a pattern is parsed into a small
 * program and run as a Thompson/Pike NFA simulation, which costs O(prompt length × pattern size) whatever the
 * pattern. On top of that, patterns are validated when set: bounded length and repetition counts, and nested
 * quantifiers like `(a+)+` are refused outright, because they are the classic catastrophic-backtracking shape and
 * keeping them out keeps the list portable to any other engine. Backreferences and lookarounds cannot be run in
 * linear time and are refused with a message saying so.
 *
 * Entry syntax: `/pattern/` (or `/pattern/i`) is a regular expression; anything else is a word or phrase matched
 * as a whole word (not inside a longer word), any run of spaces matching any run of whitespace. Matching is always
 * case-insensitive and runs on the prompt after Unicode NFKC normalisation (so full-width letters do not slip
 * through). `\w`, `\b` count letters and digits of every script, not only ASCII.
 */

export const MAX_BLOCKLIST_ENTRY_LENGTH = 100;
export const MAX_REPEAT_BOUND = 100;
const MAX_PROGRAM_SIZE = 4000;

type CharTest = (cp: number) => boolean;
type AssertKind = 'start' | 'end' | 'word-boundary' | 'not-word-boundary' | 'not-after-word' | 'not-before-word';

type Node =
  | { kind: 'char'; test: CharTest }
  | { kind: 'seq'; items: Node[] }
  | { kind: 'alt'; options: Node[] }
  | { kind: 'repeat'; body: Node; min: number; max: number }
  | { kind: 'assert'; which: AssertKind };

type Instr =
  | { op: 'char'; test: CharTest }
  | { op: 'split'; a: number; b: number }
  | { op: 'jmp'; to: number }
  | { op: 'assert'; which: AssertKind }
  | { op: 'match' };

/** A blocklist entry that cannot be used; the message is one sentence for the admin. */
export class BlocklistSyntaxError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'BlocklistSyntaxError';
  }
}

const WORD_CHAR = /^[\p{L}\p{N}\p{M}_]$/u;
const SPACE_CHAR = /^\s$/u;
const isWordCp = (cp: number): boolean => cp >= 0 && WORD_CHAR.test(String.fromCodePoint(cp));
const isSpaceCp = (cp: number): boolean => SPACE_CHAR.test(String.fromCodePoint(cp));
const isDigitCp = (cp: number): boolean => cp >= 0x30 && cp <= 0x39;
const isLineTerminator = (cp: number): boolean => cp === 0x0a || cp === 0x0d || cp === 0x2028 || cp === 0x2029;

function upperOf(cp: number): number {
  const upper = String.fromCodePoint(cp).toUpperCase();
  return upper.length > 0 && [...upper].length === 1 ? (upper.codePointAt(0) as number) : cp;
}

/** Case folding: the input is lower-cased, so a test also accepts the upper-case form of each input character. */
function folded(test: CharTest): CharTest {
  return (cp) => test(cp) || test(upperOf(cp));
}

const SYNTAX_CHARS = new Set([...'^$\\.*+?()[]{}|/-']);

class Parser {
  private readonly cps: number[];
  private pos = 0;

  constructor(source: string) {
    this.cps = [...source].map((ch) => ch.codePointAt(0) as number);
  }

  parse(): Node {
    const node = this.alternation();
    if (this.pos < this.cps.length) throw new BlocklistSyntaxError('The pattern has a ")" without a matching "(".');
    return node;
  }

  private peek(offset = 0): string | undefined {
    const cp = this.cps[this.pos + offset];
    return cp === undefined ? undefined : String.fromCodePoint(cp);
  }

  private take(): string {
    const ch = this.peek();
    if (ch === undefined) throw new BlocklistSyntaxError('The pattern ends too early.');
    this.pos += 1;
    return ch;
  }

  private alternation(): Node {
    const options = [this.sequence()];
    while (this.peek() === '|') {
      this.pos += 1;
      options.push(this.sequence());
    }
    return options.length === 1 ? (options[0] as Node) : { kind: 'alt', options };
  }

  private sequence(): Node {
    const items: Node[] = [];
    while (this.peek() !== undefined && this.peek() !== '|' && this.peek() !== ')') items.push(this.quantified());
    return items.length === 1 ? (items[0] as Node) : { kind: 'seq', items };
  }

  private quantified(): Node {
    const atom = this.atom();
    const quantifier = this.quantifier();
    if (!quantifier) return atom;
    if (atom.kind === 'assert') throw new BlocklistSyntaxError('A quantifier follows something that cannot repeat (nothing to repeat).');
    if (this.peek() === '?') this.pos += 1; // lazy: irrelevant when only asking "is there a match"
    const next = this.peek();
    if (next === '*' || next === '+' || next === '?' || next === '{') throw new BlocklistSyntaxError('Two quantifiers in a row (like "a**") are not a valid pattern.');
    if (quantifier.max > 1 && repeats(atom)) {
      throw new BlocklistSyntaxError('Nested repetition like "(a+)+" is refused: it can take exponential time in common regex engines; write it without the outer quantifier.');
    }
    return { kind: 'repeat', body: atom, min: quantifier.min, max: quantifier.max };
  }

  private quantifier(): { min: number; max: number } | undefined {
    const ch = this.peek();
    if (ch === '*') return this.advance({ min: 0, max: Infinity });
    if (ch === '+') return this.advance({ min: 1, max: Infinity });
    if (ch === '?') return this.advance({ min: 0, max: 1 });
    if (ch !== '{') return undefined;
    const rest = String.fromCodePoint(...this.cps.slice(this.pos));
    const m = /^\{(\d+)(,(\d*))?\}/.exec(rest);
    if (!m) throw new BlocklistSyntaxError('A "{" must be a repetition like {2} or {1,3}; write \\{ for a literal brace.');
    this.pos += [...m[0]].length;
    const min = Number(m[1]);
    const max = m[2] === undefined ? min : m[3] === '' || m[3] === undefined ? Infinity : Number(m[3]);
    if (min > MAX_REPEAT_BOUND || (max !== Infinity && max > MAX_REPEAT_BOUND)) {
      throw new BlocklistSyntaxError(`Repetition counts above ${MAX_REPEAT_BOUND} are not allowed.`);
    }
    if (max < min) throw new BlocklistSyntaxError(`The repetition {${min},${max}} has its numbers out of order.`);
    return { min, max };
  }

  private advance<T>(value: T): T {
    this.pos += 1;
    return value;
  }

  private atom(): Node {
    const ch = this.take();
    switch (ch) {
      case '(':
        return this.group();
      case '[': {
        const { members, negate } = this.charClass();
        // Fold before negating: [^a] must refuse "A" as well as "a".
        const test = folded(members);
        return { kind: 'char', test: negate ? (cp) => !test(cp) : test };
      }
      case '.':
        return { kind: 'char', test: (cp) => !isLineTerminator(cp) };
      case '^':
        return { kind: 'assert', which: 'start' };
      case '$':
        return { kind: 'assert', which: 'end' };
      case '\\':
        return this.escapeAtom();
      case '*':
      case '+':
      case '?':
      case '{':
        throw new BlocklistSyntaxError(`"${ch}" has nothing before it to repeat; write \\${ch} for the character itself.`);
      case ']':
      case '}':
        throw new BlocklistSyntaxError(`A lone "${ch}" is not allowed; write \\${ch} for the character itself.`);
      default: {
        const cp = ch.codePointAt(0) as number;
        return { kind: 'char', test: folded((c) => c === cp) };
      }
    }
  }

  private group(): Node {
    if (this.peek() === '?') {
      const kind = this.peek(1);
      if (kind === ':') {
        this.pos += 2;
      } else if (kind === '=' || kind === '!' || (kind === '<' && (this.peek(2) === '=' || this.peek(2) === '!'))) {
        throw new BlocklistSyntaxError('Lookarounds like (?=…) or (?<!…) are not supported, because they cannot be matched in linear time.');
      } else if (kind === '<') {
        throw new BlocklistSyntaxError('Named groups (?<name>…) are not supported; use (?:…) or plain parentheses.');
      } else {
        throw new BlocklistSyntaxError('Only (…) and (?:…) groups are supported.');
      }
    }
    const body = this.alternation();
    if (this.peek() !== ')') throw new BlocklistSyntaxError('A "(" is never closed.');
    this.pos += 1;
    return body;
  }

  private escapeAtom(): Node {
    const ch = this.peek();
    if (ch === 'b') return this.advance({ kind: 'assert', which: 'word-boundary' });
    if (ch === 'B') return this.advance({ kind: 'assert', which: 'not-word-boundary' });
    return { kind: 'char', test: folded(this.escape(false)) };
  }

  /** A character escape or class escape after the backslash, as a test. */
  private escape(inClass: boolean): CharTest {
    const ch = this.take();
    switch (ch) {
      case 'd':
        return isDigitCp;
      case 'D':
        return (cp) => !isDigitCp(cp);
      case 'w':
        return isWordCp;
      case 'W':
        return (cp) => !isWordCp(cp);
      case 's':
        return isSpaceCp;
      case 'S':
        return (cp) => !isSpaceCp(cp);
      case 'n':
        return literal(0x0a);
      case 'r':
        return literal(0x0d);
      case 't':
        return literal(0x09);
      case 'f':
        return literal(0x0c);
      case 'v':
        return literal(0x0b);
      case '0':
        if (this.peek() !== undefined && /\d/.test(this.peek() as string)) throw new BlocklistSyntaxError('Octal escapes are not supported.');
        return literal(0);
      case 'x': {
        const hex = this.hexDigits(2);
        return literal(hex);
      }
      case 'u': {
        if (this.peek() === '{') {
          this.pos += 1;
          let digits = '';
          while (this.peek() !== undefined && this.peek() !== '}') digits += this.take();
          this.take();
          const cp = /^[0-9a-fA-F]{1,6}$/.test(digits) ? parseInt(digits, 16) : NaN;
          if (!(cp <= 0x10ffff)) throw new BlocklistSyntaxError('A \\u{…} escape must be a hexadecimal code point.');
          return literal(cp);
        }
        return literal(this.hexDigits(4));
      }
      case 'p':
      case 'P': {
        if (this.take() !== '{') throw new BlocklistSyntaxError('A \\p escape needs a property in braces, like \\p{L}.');
        let name = '';
        while (this.peek() !== undefined && this.peek() !== '}') name += this.take();
        this.take();
        let property: RegExp;
        try {
          // Safe: the property test is applied to one character at a time.
          property = new RegExp(`^\\p{${name}}$`, 'u');
        } catch {
          throw new BlocklistSyntaxError(`\\p{${name}} is not a Unicode property JavaScript knows.`);
        }
        const test: CharTest = (cp) => property.test(String.fromCodePoint(cp));
        return ch === 'p' ? test : (cp) => !test(cp);
      }
      case 'k':
        throw new BlocklistSyntaxError('Backreferences like \\k<name> are not supported, because they cannot be matched in linear time.');
      case 'b':
        if (inClass) throw new BlocklistSyntaxError('[\\b] (backspace) is not supported in a blocklist pattern.');
        break;
      default:
        break;
    }
    if (/^[1-9]$/.test(ch)) throw new BlocklistSyntaxError(`Backreferences like \\${ch} are not supported, because they cannot be matched in linear time.`);
    if (SYNTAX_CHARS.has(ch) && (ch !== '-' || inClass)) return literal(ch.codePointAt(0) as number);
    throw new BlocklistSyntaxError(`"\\${ch}" is not an escape this blocklist understands.`);
  }

  private hexDigits(count: number): number {
    let digits = '';
    for (let i = 0; i < count; i++) digits += this.take();
    if (!/^[0-9a-fA-F]+$/.test(digits)) throw new BlocklistSyntaxError('A \\x or \\u escape needs hexadecimal digits.');
    return parseInt(digits, 16);
  }

  private charClass(): { members: CharTest; negate: boolean } {
    let negate = false;
    if (this.peek() === '^') {
      negate = true;
      this.pos += 1;
    }
    const tests: CharTest[] = [];
    for (;;) {
      const ch = this.peek();
      if (ch === undefined) throw new BlocklistSyntaxError('A "[" is never closed.');
      if (ch === ']') {
        this.pos += 1;
        break;
      }
      const low = this.classAtom();
      if (this.peek() === '-' && this.peek(1) !== ']' && this.peek(1) !== undefined) {
        this.pos += 1;
        const high = this.classAtom();
        if (typeof low !== 'number' || typeof high !== 'number') throw new BlocklistSyntaxError('A range in [...] must go from one character to another.');
        if (high < low) throw new BlocklistSyntaxError('A range in [...] has its ends out of order.');
        tests.push((cp) => cp >= low && cp <= high);
      } else {
        tests.push(typeof low === 'number' ? (cp) => cp === low : low);
      }
    }
    return { members: (cp) => tests.some((t) => t(cp)), negate };
  }

  /** One class member: a code point, or a class escape such as \d as a test. */
  private classAtom(): number | CharTest {
    const ch = this.take();
    if (ch !== '\\') return ch.codePointAt(0) as number;
    const next = this.peek();
    if (next !== undefined && 'dDwWsSpP'.includes(next)) return this.escape(true);
    const test = this.escape(true);
    // Every other escape is a single character; find which by probing is not possible, so re-parse cheaply.
    return singleCodePoint(test) ?? test;
  }
}

function literal(cp: number): CharTest {
  const test: CharTest = (c) => c === cp;
  LITERALS.set(test, cp);
  return test;
}
const LITERALS = new WeakMap<CharTest, number>();
function singleCodePoint(test: CharTest): number | undefined {
  return LITERALS.get(test);
}

function repeats(node: Node): boolean {
  switch (node.kind) {
    case 'repeat':
      return node.max > 1 || repeats(node.body);
    case 'seq':
      return node.items.some(repeats);
    case 'alt':
      return node.options.some(repeats);
    default:
      return false;
  }
}

function compile(node: Node): Instr[] {
  const program: Instr[] = [];
  const push = (instr: Instr): number => {
    if (program.length >= MAX_PROGRAM_SIZE) throw new BlocklistSyntaxError('The pattern is too large once its repetitions are written out; use smaller counts.');
    program.push(instr);
    return program.length - 1;
  };
  const emit = (n: Node): void => {
    switch (n.kind) {
      case 'char':
        push({ op: 'char', test: n.test });
        return;
      case 'assert':
        push({ op: 'assert', which: n.which });
        return;
      case 'seq':
        for (const item of n.items) emit(item);
        return;
      case 'alt': {
        const jumps: number[] = [];
        n.options.forEach((option, i) => {
          if (i < n.options.length - 1) {
            const split = push({ op: 'split', a: 0, b: 0 });
            (program[split] as { a: number }).a = program.length;
            emit(option);
            jumps.push(push({ op: 'jmp', to: 0 }));
            (program[split] as { b: number }).b = program.length;
          } else {
            emit(option);
          }
        });
        for (const j of jumps) (program[j] as { to: number }).to = program.length;
        return;
      }
      case 'repeat': {
        for (let i = 0; i < n.min; i++) emit(n.body);
        if (n.max === Infinity) {
          const split = push({ op: 'split', a: 0, b: 0 });
          (program[split] as { a: number }).a = program.length;
          emit(n.body);
          push({ op: 'jmp', to: split });
          (program[split] as { b: number }).b = program.length;
        } else {
          const splits: number[] = [];
          for (let i = n.min; i < n.max; i++) {
            const split = push({ op: 'split', a: 0, b: 0 });
            (program[split] as { a: number }).a = program.length;
            splits.push(split);
            emit(n.body);
          }
          for (const s of splits) (program[s] as { b: number }).b = program.length;
        }
        return;
      }
    }
  };
  emit(node);
  push({ op: 'match' });
  return program;
}

/**
 * Pike VM: every thread advances in lock-step over the input, so the cost is O(input × program). Threads are kept
 * in priority order (the order a backtracking engine would try them), and a match cuts off the lower-priority
 * threads, so the reported text is the one JavaScript's RegExp would find (leftmost, greedy).
 */
function search(program: readonly Instr[], input: readonly number[]): { start: number; end: number } | undefined {
  const marks = new Int32Array(program.length);
  const n = input.length;
  const holds = (which: AssertKind, pos: number): boolean => {
    const before = pos > 0 ? isWordCp(input[pos - 1] as number) : false;
    const after = pos < n ? isWordCp(input[pos] as number) : false;
    switch (which) {
      case 'start':
        return pos === 0;
      case 'end':
        return pos === n;
      case 'word-boundary':
        return before !== after;
      case 'not-word-boundary':
        return before === after;
      case 'not-after-word':
        return !before;
      case 'not-before-word':
        return !after;
    }
  };
  let matched: { start: number; end: number } | undefined;
  type Thread = { pc: number; start: number };
  /** Follows jumps, splits and assertions from `startPc`; true when it reached a match (the rest is cut). */
  const follow = (list: Thread[], startPc: number, pos: number, start: number): boolean => {
    const stack = [startPc];
    while (stack.length > 0) {
      const pc = stack.pop() as number;
      if (marks[pc] === pos + 1) continue;
      marks[pc] = pos + 1;
      const instr = program[pc] as Instr;
      switch (instr.op) {
        case 'jmp':
          stack.push(instr.to);
          break;
        case 'split':
          stack.push(instr.b, instr.a); // `a` first: it has priority
          break;
        case 'assert':
          if (holds(instr.which, pos)) stack.push(pc + 1);
          break;
        case 'match':
          matched = { start, end: pos };
          return true;
        case 'char':
          list.push({ pc, start });
          break;
      }
    }
    return false;
  };
  let current: Thread[] = [];
  for (let pos = 0; ; pos++) {
    // A new attempt starting here has the lowest priority; none once a match is known (leftmost wins).
    if (!matched) follow(current, 0, pos, pos);
    if (pos === n || (matched && current.length === 0)) break;
    const next: Thread[] = [];
    const cp = input[pos] as number;
    for (const thread of current) {
      const instr = program[thread.pc] as Instr & { op: 'char' };
      if (instr.test(cp) && follow(next, thread.pc + 1, pos + 1, thread.start)) break;
    }
    current = next;
  }
  return matched;
}

/** One compiled entry. */
interface CompiledEntry {
  entry: string;
  program: Instr[];
}

export interface BlocklistMatch {
  /** The blocklist entry as the admin wrote it. */
  entry: string;
  /** The part of the (normalised, lower-cased) prompt that matched. */
  text: string;
}

/** Parses one entry; throws BlocklistSyntaxError with a one-sentence reason when it cannot be used. */
export function compileBlocklistEntry(entry: string): CompiledEntry {
  const trimmed = entry.trim();
  if (trimmed.length === 0) throw new BlocklistSyntaxError('A blocklist entry cannot be empty.');
  if ([...trimmed].length > MAX_BLOCKLIST_ENTRY_LENGTH) {
    throw new BlocklistSyntaxError(`A blocklist entry can be at most ${MAX_BLOCKLIST_ENTRY_LENGTH} characters long.`);
  }
  const regex = /^\/(.+)\/([a-z]*)$/s.exec(trimmed);
  let node: Node;
  if (regex) {
    const [, source, flags] = regex as unknown as [string, string, string];
    if (flags !== '' && flags !== 'i') throw new BlocklistSyntaxError(`Only the "i" flag is accepted (matching is always case-insensitive), not "${flags}".`);
    // The pattern must also be valid JavaScript, so the list means the same thing in any regex tool an admin uses.
    try {
      new RegExp(source, 'u');
    } catch (error) {
      const reason = (error as Error).message.replace(/^Invalid regular expression: \/.*\/[a-z]*: /s, '');
      throw new BlocklistSyntaxError(`The pattern /${source}/ does not compile (${reason.toLowerCase()}).`);
    }
    node = new Parser(source).parse();
  } else {
    node = phrase(trimmed);
  }
  return { entry: trimmed, program: compile(node) };
}

/** A word or phrase: whole words only, whitespace runs match any whitespace run. */
function phrase(text: string): Node {
  const items: Node[] = [{ kind: 'assert', which: 'not-after-word' }];
  const words = normalise(text).split(/\s+/u);
  words.forEach((word, i) => {
    if (i > 0) items.push({ kind: 'repeat', body: { kind: 'char', test: isSpaceCp }, min: 1, max: Infinity });
    for (const ch of word) {
      const cp = ch.codePointAt(0) as number;
      items.push({ kind: 'char', test: folded((c) => c === cp) });
    }
  });
  items.push({ kind: 'assert', which: 'not-before-word' });
  return { kind: 'seq', items };
}

function normalise(text: string): string {
  return text.normalize('NFKC').toLowerCase();
}

/** A compiled blocklist: check prompts with `match`. Building one validates every entry. */
export class Blocklist {
  private readonly entries: CompiledEntry[];

  private constructor(entries: CompiledEntry[]) {
    this.entries = entries;
  }

  /** Throws BlocklistSyntaxError (its message names the entry) for the first unusable entry. */
  static compile(entries: readonly string[]): Blocklist {
    return new Blocklist(
      entries.map((entry) => {
        try {
          return compileBlocklistEntry(entry);
        } catch (error) {
          if (error instanceof BlocklistSyntaxError) throw new BlocklistSyntaxError(`Blocklist entry "${entry}": ${error.message}`);
          throw error;
        }
      }),
    );
  }

  get size(): number {
    return this.entries.length;
  }

  /** The first entry that matches the prompt, or undefined. */
  match(prompt: string): BlocklistMatch | undefined {
    const input = [...normalise(prompt)].map((ch) => ch.codePointAt(0) as number);
    for (const { entry, program } of this.entries) {
      const hit = search(program, input);
      if (hit) return { entry, text: String.fromCodePoint(...input.slice(hit.start, hit.end)) };
    }
    return undefined;
  }
}
