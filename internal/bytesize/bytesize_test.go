package bytesize

import "testing"

func TestParse(t *testing.T) {
	good := []struct {
		in   string
		want int64
	}{
		{"0", 0}, {"4096", 4096}, {"64KiB", 64 << 10}, {"256MiB", 256 << 20}, {"1GiB", 1 << 30},
		{"1.5GiB", 3 << 29}, {"10m", 10 << 20}, {"1GB", 1e9}, {" 2 MiB ", 2 << 20}, {"7b", 7},
	}
	for _, c := range good {
		t.Run(c.in, func(t *testing.T) {
			got, err := Parse(c.in)
			if err != nil || got != c.want {
				t.Fatalf("Parse(%q) = %d, %v; want %d", c.in, got, err, c.want)
			}
		})
	}
	for _, in := range []string{"", "MiB", "-1", "1XB", "NaN", "inf", "1e30GiB", "12 34"} {
		t.Run("bad/"+in, func(t *testing.T) {
			if got, err := Parse(in); err == nil {
				t.Fatalf("Parse(%q) = %d; want error", in, got)
			}
		})
	}
}

func TestFormatRoundTrip(t *testing.T) {
	for _, n := range []int64{0, 1, 1023, 1024, 3 << 20, 5 << 30, 1<<40 + 1} {
		got, err := Parse(Format(n))
		if err != nil || got != n {
			t.Fatalf("Parse(Format(%d)=%q) = %d, %v", n, Format(n), got, err)
		}
	}
}

func FuzzParse(f *testing.F) {
	for _, s := range []string{"1GiB", "10m", "1.5kb", "-3", ""} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		n, err := Parse(s)
		if err == nil && n < 0 {
			t.Fatalf("Parse(%q) = %d: negative without error", s, n)
		}
	})
}
