package cache

import (
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"io"
	"net/http"
	"sort"
	"time"
)

// On-disk object file, little-endian:
//
//	off  0  [4]byte magic "RHZC"
//	off  4  uint16  format version (formatVersion)
//	off  6  uint16  reserved, zero
//	off  8  uint64  object id (identity of the body; kept by UpdateMeta)
//	off 16  uint64  body length (written last, at Commit)
//	off 24  uint32  meta length
//	off 28  uint32  CRC-32C of the meta bytes
//	off 32  meta    (binary, see appendMeta)
//	        body    (body length bytes, to the end of the file)
//
// The file length must equal preambleLen+metaLen+bodyLen exactly; that is how a partial
// file is recognised without reading the body.
const (
	fileMagic     = "RHZC"
	formatVersion = 1 // bump on any incompatible change; old files are then deleted at Open
	preambleLen   = 32
	// maxMetaLen bounds the meta block so a corrupt length cannot make Open allocate
	// gigabytes; real response headers are a few KiB, keys up to several KiB.
	maxMetaLen = 1 << 20
	// bodySizeOff is where Commit writes the final body length.
	bodySizeOff = 16
)

var crcTable = crc32.MakeTable(crc32.Castagnoli)

// errCorrupt marks a file that is not a valid object file; the caller deletes it.
var errCorrupt = errors.New("corrupt object file")

// preamble is the fixed-size start of an object file.
type preamble struct {
	id       uint64
	bodySize int64
	metaLen  uint32
	metaCRC  uint32
}

func (p preamble) bodyOff() int64 { return preambleLen + int64(p.metaLen) }

func (p preamble) fileSize() int64 { return p.bodyOff() + p.bodySize }

// encodeHeader returns preamble+meta for a file whose body length is bodySize.
func encodeHeader(id uint64, bodySize int64, meta []byte) []byte {
	b := make([]byte, preambleLen, preambleLen+len(meta))
	copy(b, fileMagic)
	binary.LittleEndian.PutUint16(b[4:], formatVersion)
	binary.LittleEndian.PutUint64(b[8:], id)
	binary.LittleEndian.PutUint64(b[16:], uint64(bodySize))
	binary.LittleEndian.PutUint32(b[24:], uint32(len(meta)))
	binary.LittleEndian.PutUint32(b[28:], crc32.Checksum(meta, crcTable))
	return append(b, meta...)
}

func decodePreamble(b []byte) (preamble, error) {
	if len(b) < preambleLen {
		return preamble{}, fmt.Errorf("%w: short preamble", errCorrupt)
	}
	if string(b[:4]) != fileMagic {
		return preamble{}, fmt.Errorf("%w: bad magic", errCorrupt)
	}
	if v := binary.LittleEndian.Uint16(b[4:]); v != formatVersion {
		return preamble{}, fmt.Errorf("%w: unsupported version %d", errCorrupt, v)
	}
	p := preamble{
		id:      binary.LittleEndian.Uint64(b[8:]),
		metaLen: binary.LittleEndian.Uint32(b[24:]),
		metaCRC: binary.LittleEndian.Uint32(b[28:]),
	}
	bs := binary.LittleEndian.Uint64(b[16:])
	if bs > 1<<62 {
		return preamble{}, fmt.Errorf("%w: body length %d", errCorrupt, bs)
	}
	p.bodySize = int64(bs)
	if p.metaLen > maxMetaLen {
		return preamble{}, fmt.Errorf("%w: meta length %d", errCorrupt, p.metaLen)
	}
	return p, nil
}

// readHeader reads and validates the preamble and meta of an open object file.
// size is the file's length as reported by the file system.
func readHeader(r io.ReaderAt, size int64) (preamble, *Meta, error) {
	// One read covers preamble and meta for nearly every object.
	buf := make([]byte, min(size, 4096))
	if _, err := r.ReadAt(buf, 0); err != nil && !errors.Is(err, io.EOF) {
		return preamble{}, nil, err
	}
	p, err := decodePreamble(buf)
	if err != nil {
		return preamble{}, nil, err
	}
	if p.fileSize() != size {
		return preamble{}, nil, fmt.Errorf("%w: length %d, header says %d", errCorrupt, size, p.fileSize())
	}
	var mb []byte
	if int64(len(buf)) >= p.bodyOff() {
		mb = buf[preambleLen:p.bodyOff()]
	} else {
		mb = make([]byte, p.metaLen)
		if _, err := r.ReadAt(mb, preambleLen); err != nil {
			return preamble{}, nil, err
		}
	}
	if crc32.Checksum(mb, crcTable) != p.metaCRC {
		return preamble{}, nil, fmt.Errorf("%w: meta checksum mismatch", errCorrupt)
	}
	m, err := decodeMeta(mb)
	if err != nil {
		return preamble{}, nil, err
	}
	m.Size = p.bodySize
	return p, m, nil
}

// The meta block is binary rather than JSON because keys and header values may hold any
// bytes, and encoding/json silently replaces invalid UTF-8, which would change the key.
//
//	key          string
//	status       varint
//	request time  time
//	response time time
//	header       uvarint count, then per name (sorted): string name, uvarint n, n strings
//	tags         uvarint count, then strings
//
// string = uvarint length + bytes; time = 0x00 (zero time) or 0x01 + varint Unix seconds +
// uvarint nanoseconds (UTC). Size is not in the meta: it lives in the preamble.

func appendMeta(b []byte, m *Meta) []byte {
	b = appendString(b, m.Key)
	b = binary.AppendVarint(b, int64(m.Status))
	b = appendTime(b, m.RequestTime)
	b = appendTime(b, m.ResponseTime)
	names := make([]string, 0, len(m.Header))
	for k := range m.Header {
		names = append(names, k)
	}
	sort.Strings(names) // deterministic bytes make files comparable and tests stable
	b = binary.AppendUvarint(b, uint64(len(names)))
	for _, k := range names {
		vs := m.Header[k]
		b = appendString(b, k)
		b = binary.AppendUvarint(b, uint64(len(vs)))
		for _, v := range vs {
			b = appendString(b, v)
		}
	}
	b = binary.AppendUvarint(b, uint64(len(m.Tags)))
	for _, t := range m.Tags {
		b = appendString(b, t)
	}
	return b
}

func appendString(b []byte, s string) []byte {
	b = binary.AppendUvarint(b, uint64(len(s)))
	return append(b, s...)
}

func appendTime(b []byte, t time.Time) []byte {
	if t.IsZero() {
		return append(b, 0)
	}
	b = append(b, 1)
	b = binary.AppendVarint(b, t.Unix())
	return binary.AppendUvarint(b, uint64(t.Nanosecond()))
}

// metaDecoder reads the meta block; the first error sticks so callers check once.
type metaDecoder struct {
	b   []byte
	err error
}

func (d *metaDecoder) fail(what string) {
	if d.err == nil {
		d.err = fmt.Errorf("%w: meta: bad %s", errCorrupt, what)
	}
}

func (d *metaDecoder) uvarint(what string) uint64 {
	if d.err != nil {
		return 0
	}
	v, n := binary.Uvarint(d.b)
	if n <= 0 {
		d.fail(what)
		return 0
	}
	d.b = d.b[n:]
	return v
}

func (d *metaDecoder) varint(what string) int64 {
	if d.err != nil {
		return 0
	}
	v, n := binary.Varint(d.b)
	if n <= 0 {
		d.fail(what)
		return 0
	}
	d.b = d.b[n:]
	return v
}

// count reads an element count; each element takes at least one byte, so a count larger
// than what is left is corrupt (and must not size an allocation).
func (d *metaDecoder) count(what string) int {
	n := d.uvarint(what)
	if n > uint64(len(d.b)) {
		d.fail(what)
		return 0
	}
	return int(n)
}

func (d *metaDecoder) string(what string) string {
	n := d.uvarint(what)
	if d.err != nil {
		return ""
	}
	if n > uint64(len(d.b)) {
		d.fail(what)
		return ""
	}
	s := string(d.b[:n])
	d.b = d.b[n:]
	return s
}

func (d *metaDecoder) time(what string) time.Time {
	if d.err != nil {
		return time.Time{}
	}
	if len(d.b) == 0 {
		d.fail(what)
		return time.Time{}
	}
	flag := d.b[0]
	d.b = d.b[1:]
	switch flag {
	case 0:
		return time.Time{}
	case 1:
		sec := d.varint(what)
		nsec := d.uvarint(what)
		if nsec >= 1e9 {
			d.fail(what)
			return time.Time{}
		}
		return time.Unix(sec, int64(nsec)).UTC()
	default:
		d.fail(what)
		return time.Time{}
	}
}

func decodeMeta(b []byte) (*Meta, error) {
	d := metaDecoder{b: b}
	m := &Meta{}
	m.Key = d.string("key")
	st := d.varint("status")
	if st < -1<<31 || st > 1<<31-1 {
		d.fail("status")
	}
	m.Status = int(st)
	m.RequestTime = d.time("request time")
	m.ResponseTime = d.time("response time")
	if n := d.count("header count"); n > 0 {
		m.Header = make(http.Header, n)
		for range n {
			k := d.string("header name")
			nv := d.count("header value count")
			vs := make([]string, 0, nv)
			for range nv {
				vs = append(vs, d.string("header value"))
			}
			if d.err != nil {
				break
			}
			m.Header[k] = append(m.Header[k], vs...)
		}
	}
	if n := d.count("tag count"); n > 0 {
		m.Tags = make([]string, 0, n)
		for range n {
			m.Tags = append(m.Tags, d.string("tag"))
		}
	}
	if d.err == nil && len(d.b) != 0 {
		d.fail("trailing bytes")
	}
	if d.err != nil {
		return nil, d.err
	}
	return m, nil
}
