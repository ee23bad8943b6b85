/**
 * What an ELF file tells the loader about where code comes from, read from the file's own headers
 * as elf(5) lays them out (64- and 32-bit, either byte order): its program interpreter (PT_INTERP),
 * its RUNPATH and RPATH, and the libraries it needs (DT_NEEDED). `vault allow` refuses a program
 * that would load code from a place others than root can change; ld.so(8) says how each is searched.
 */
import * as fs from 'node:fs';

const ELF_MAGIC = Buffer.from([0x7f, 0x45, 0x4c, 0x46]);
const PT_LOAD = 1;
const PT_DYNAMIC = 2;
const PT_INTERP = 3;
const DT_NULL = 0;
const DT_NEEDED = 1;
const DT_STRTAB = 5;
const DT_RPATH = 15;
const DT_RUNPATH = 29;
/** elf(5) headers and tables are small: one bigger than this is a damaged file, not a program. */
const MAX_TABLE_BYTES = 1 << 20;
const MAX_STRING_BYTES = 4096;

export interface LoaderFacts {
  /** PT_INTERP as written (the dynamic loader), undefined for a static program. */
  interpreter: string | undefined;
  /** The entries of DT_RUNPATH and DT_RPATH as written, empty entries included. */
  runpaths: string[];
  /** DT_NEEDED names as written. */
  needed: string[];
}

/** Thrown when the headers do not hold together; callers refuse such a file. */
export class UnreadableElf extends Error {}

function readExactly(fd: number, offset: number, length: number): Buffer {
  if (!Number.isSafeInteger(offset) || offset < 0 || length < 0 || length > MAX_TABLE_BYTES) throw new UnreadableElf(`a table at ${offset} of ${length} bytes`);
  const buffer = Buffer.alloc(length);
  const read = fs.readSync(fd, buffer, 0, length, offset);
  if (read !== length) throw new UnreadableElf(`the file ends inside a table at ${offset}`);
  return buffer;
}

export function isElf(fd: number): boolean {
  const head = Buffer.alloc(4);
  return fs.readSync(fd, head, 0, 4, 0) === 4 && head.equals(ELF_MAGIC);
}

interface Layout {
  wide: boolean;
  little: boolean;
}

function word(buffer: Buffer, at: number, { wide, little }: Layout): number {
  if (!wide) return little ? buffer.readUInt32LE(at) : buffer.readUInt32BE(at);
  const value = little ? buffer.readBigUInt64LE(at) : buffer.readBigUInt64BE(at);
  if (value > BigInt(Number.MAX_SAFE_INTEGER)) throw new UnreadableElf('a field beyond any file offset');
  return Number(value);
}

function cString(fd: number, offset: number): string {
  const text = Buffer.alloc(MAX_STRING_BYTES);
  const read = fs.readSync(fd, text, 0, text.length, offset);
  const end = text.subarray(0, read).indexOf(0);
  if (end === -1) throw new UnreadableElf('a string without its end');
  return text.subarray(0, end).toString('utf8');
}

/** The loader facts of an ELF file; throws UnreadableElf when its headers are inconsistent. */
export function loaderFacts(fd: number): LoaderFacts {
  try {
    const header = readExactly(fd, 0, 52);
    if (!header.subarray(0, 4).equals(ELF_MAGIC)) throw new UnreadableElf('not an ELF file');
    const layout: Layout = { wide: header[4] === 2, little: header[5] === 1 };
    if (![1, 2].includes(header[4]!) || ![1, 2].includes(header[5]!)) throw new UnreadableElf('an unknown class or byte order');
    const full = layout.wide ? readExactly(fd, 0, 64) : header;
    const half = (at: number) => (layout.little ? full.readUInt16LE(at) : full.readUInt16BE(at));
    const phoff = word(full, layout.wide ? 32 : 28, layout);
    const phentsize = half(layout.wide ? 54 : 42);
    const phnum = half(layout.wide ? 56 : 44);
    if (phentsize < (layout.wide ? 56 : 32)) throw new UnreadableElf('program headers too small');
    const table = readExactly(fd, phoff, phentsize * phnum);
    const segments = [];
    for (let i = 0; i + phentsize <= table.length; i += phentsize) {
      const at = (o64: number, o32: number) => word(table, i + (layout.wide ? o64 : o32), layout);
      const type = layout.little ? table.readUInt32LE(i) : table.readUInt32BE(i);
      segments.push({ type, offset: at(8, 4), vaddr: at(16, 8), filesz: at(32, 16) });
    }
    const interp = segments.find((s) => s.type === PT_INTERP);
    const facts: LoaderFacts = { interpreter: interp === undefined ? undefined : cString(fd, interp.offset), runpaths: [], needed: [] };
    const dynamic = segments.find((s) => s.type === PT_DYNAMIC);
    if (dynamic === undefined) return facts;
    const entries = readExactly(fd, dynamic.offset, dynamic.filesz);
    const size = layout.wide ? 16 : 8;
    let strtab: number | undefined;
    const wanted: { tag: number; value: number }[] = [];
    for (let i = 0; i + size <= entries.length; i += size) {
      const tag = word(entries, i, layout);
      if (tag === DT_NULL) break;
      const value = word(entries, i + size / 2, layout);
      if (tag === DT_STRTAB) strtab = value;
      if (tag === DT_RUNPATH || tag === DT_RPATH || tag === DT_NEEDED) wanted.push({ tag, value });
    }
    if (wanted.length === 0) return facts;
    // DT_STRTAB is an address: the file offset is where a PT_LOAD segment maps it
    const load = segments.find((s) => s.type === PT_LOAD && strtab !== undefined && strtab >= s.vaddr && strtab < s.vaddr + s.filesz);
    if (strtab === undefined || load === undefined) throw new UnreadableElf('a string table outside every loaded segment');
    const strings = strtab - load.vaddr + load.offset;
    for (const { tag, value } of wanted) {
      const text = cString(fd, strings + value);
      if (tag === DT_NEEDED) facts.needed.push(text);
      else facts.runpaths.push(...text.split(':'));
    }
    return facts;
  } catch (error) {
    if (error instanceof UnreadableElf) throw error;
    throw new UnreadableElf(error instanceof Error ? error.message : String(error));
  }
}
