package cache

import (
	"bytes"
	"net/http"
	"testing"
	"time"
)

func TestMetaRoundTrip(t *testing.T) {
	tests := []struct {
		name string
		meta Meta
	}{
		{"empty", Meta{}},
		{"full", testMeta("http://example.com/a\x00vary", "x", "y")},
		{"invalid utf-8", Meta{Key: "\xff\x00\xfe", Header: http.Header{"\x80": {"\x81", ""}}, Tags: []string{""}}},
		{"negative status and old time", Meta{Key: "k", Status: -5, RequestTime: time.Unix(-1e10, 5)}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			b := appendMeta(nil, &tt.meta)
			got, err := decodeMeta(b)
			if err != nil {
				t.Fatal(err)
			}
			checkMeta(t, got, tt.meta, 0)
			if again := appendMeta(nil, got); !bytes.Equal(again, b) {
				t.Error("re-encoding differs")
			}
		})
	}
}

func TestDecodeMetaRejects(t *testing.T) {
	good := appendMeta(nil, new(testMeta("http://example.com/", "t")))
	tests := []struct {
		name string
		b    []byte
	}{
		{"empty", nil},
		{"truncated", good[:len(good)-1]},
		{"trailing byte", append(append([]byte(nil), good...), 0)},
		{"huge key length", []byte{0xff, 0xff, 0xff, 0xff, 0x0f}},
		{"huge header count", append(appendMeta(nil, &Meta{Key: "k"})[:len(appendMeta(nil, &Meta{Key: "k"}))-2], 0xff, 0xff, 0x03, 0)},
		{"bad time flag", []byte{1, 'k', 0, 7}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if _, err := decodeMeta(tt.b); err == nil {
				t.Error("no error")
			}
		})
	}
}

// FuzzDecodeMeta: any bytes decode or fail, never panic, and what decodes re-encodes to a
// stable form.
func FuzzDecodeMeta(f *testing.F) {
	f.Add(appendMeta(nil, new(testMeta("http://example.com/a", "t1", "t2"))))
	f.Add(appendMeta(nil, &Meta{}))
	f.Add([]byte{0xff, 0xff})
	f.Fuzz(func(t *testing.T, b []byte) {
		m, err := decodeMeta(b)
		if err != nil {
			return
		}
		enc := appendMeta(nil, m)
		m2, err := decodeMeta(enc)
		if err != nil {
			t.Fatalf("re-decode: %v", err)
		}
		if !bytes.Equal(appendMeta(nil, m2), enc) {
			t.Fatal("encoding not stable")
		}
	})
}

// FuzzReadHeader: an object file's header never panics the reader, whatever the bytes.
func FuzzReadHeader(f *testing.F) {
	mb := appendMeta(nil, new(testMeta("http://example.com/a")))
	f.Add(append(encodeHeader(1, 3, mb), "abc"...))
	f.Add([]byte("RHZC"))
	f.Fuzz(func(t *testing.T, b []byte) {
		p, m, err := readHeader(bytes.NewReader(b), int64(len(b)))
		if err != nil {
			return
		}
		if p.fileSize() != int64(len(b)) || m.Size != p.bodySize {
			t.Fatalf("accepted inconsistent header: %+v", p)
		}
	})
}
