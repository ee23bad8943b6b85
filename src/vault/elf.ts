/**
 * The two facts of an ELF file that `vault allow` checks: that it is one, and where its RUNPATH and
 * RPATH let the dynamic loader take libraries from (a directory the caller can write would hold
 * code outside the pin). Read from the file's own headers as elf(5) lays them out; 64- and 32-bit,
 * either byte order.
 */
import * as fs from 'node:fs';

const ELF_MAGIC = Buffer.from([0x7f, 0x45, 0x4c, 0x46]);
const PT_DYNAMIC = 2;
const DT_NULL = 0;
const DT_STRTAB = 5;
const DT_RPATH = 15;
const DT_RUNPATH = 29;
const PT_LOAD = 1;
/** elf(5) headers are small; a table bigger than this is a damaged file, not a program. */
const MAX_TABLE_BYTES = 1 << 20;

function readAt(fd: number, offset: number, length: number): Buffer {
  const buffer = Buffer.alloc(length);
  const read = fs.readSync(fd, buffer, 0, length, offset);
  return buffer.subarray(0, read);
}

export function isElf(fd: number): boolean {
  return readAt(fd, 0, 4).equals(ELF_MAGIC);
}

interface Layout {
  wide: boolean;
  little: boolean;
}

function word(buffer: Buffer, at: number, { wide, little }: Layout): number {
  if (!wide) return little ? buffer.readUInt32LE(at) : buffer.readUInt32BE(at);
  return Number(little ? buffer.readBigUInt64LE(at) : buffer.readBigUInt64BE(at));
}

function half(buffer: Buffer, at: number, little: boolean): number {
  return little ? buffer.readUInt16LE(at) : buffer.readUInt16BE(at);
}

/**
 * The directories of DT_RUNPATH and DT_RPATH, as written (with `$ORIGIN` unexpanded), in order; []
 * for a static program or one without them. Returns undefined when `fd` is not a readable ELF file.
 */
export function elfRunpaths(fd: number): string[] | undefined {
  const header = readAt(fd, 0, 64);
  if (header.length < 52 || !header.subarray(0, 4).equals(ELF_MAGIC)) return undefined;
  const layout: Layout = { wide: header[4] === 2, little: header[5] === 1 };
  if (layout.wide && header.length < 64) return undefined;
  const phoff = word(header, layout.wide ? 32 : 28, layout);
  const phentsize = half(header, layout.wide ? 54 : 42, layout.little);
  const phnum = half(header, layout.wide ? 56 : 44, layout.little);
  if (phentsize * phnum > MAX_TABLE_BYTES || phentsize < (layout.wide ? 56 : 32)) return undefined;
  const table = readAt(fd, phoff, phentsize * phnum);
  const segments = [];
  for (let i = 0; i + phentsize <= table.length; i += phentsize) {
    const at = (o64: number, o32: number) => word(table, i + (layout.wide ? o64 : o32), layout);
    const type = layout.little ? table.readUInt32LE(i) : table.readUInt32BE(i);
    segments.push({ type, offset: at(8, 4), vaddr: at(16, 8), filesz: at(32, 16) });
  }
  const dynamic = segments.find((s) => s.type === PT_DYNAMIC);
  if (dynamic === undefined) return [];
  if (dynamic.filesz > MAX_TABLE_BYTES) return undefined;
  const entries = readAt(fd, dynamic.offset, dynamic.filesz);
  const size = layout.wide ? 16 : 8;
  let strtab: number | undefined;
  const wanted: number[] = [];
  for (let i = 0; i + size <= entries.length; i += size) {
    const tag = word(entries, i, layout);
    const value = word(entries, i + size / 2, layout);
    if (tag === DT_NULL) break;
    if (tag === DT_STRTAB) strtab = value;
    if (tag === DT_RUNPATH || tag === DT_RPATH) wanted.push(value);
  }
  if (wanted.length === 0) return [];
  // DT_STRTAB is an address: the file offset is where a PT_LOAD segment maps it
  const load = segments.find((s) => s.type === PT_LOAD && strtab !== undefined && strtab >= s.vaddr && strtab < s.vaddr + s.filesz);
  if (strtab === undefined || load === undefined) return undefined;
  const strings = strtab - load.vaddr + load.offset;
  return wanted.flatMap((offset) => {
    const text = readAt(fd, strings + offset, 4096);
    const end = text.indexOf(0);
    return (end === -1 ? text : text.subarray(0, end)).toString('utf8').split(':').filter((d) => d !== '');
  });
}
