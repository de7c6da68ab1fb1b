package app

import (
	"bytes"
	"context"
	"strings"
	"testing"
	"time"
)

const cast = `{"version":2,"width":80,"height":24}
[0.5, "o", "a"]
[0.5, "r", "100x30"]
[10.5, "i", "typed"]
[10.5, "o", "b\r\n"]
[11.0, "m", "transcript cut"]
[12.0, "o", "c"]
`

// Output events are played with their pauses, scaled by speed and cut to the
// idle limit; other events print nothing.
func TestPlayKeepsTheRecordedTiming(t *testing.T) {
	for _, tc := range []struct {
		speed, idle float64
		want        []time.Duration
	}{
		{1, 0, []time.Duration{500 * time.Millisecond, 10 * time.Second, 1500 * time.Millisecond}},
		{2, 0, []time.Duration{250 * time.Millisecond, 5 * time.Second, 750 * time.Millisecond}},
		{1, 2, []time.Duration{500 * time.Millisecond, 2 * time.Second, 1500 * time.Millisecond}},
	} {
		var out bytes.Buffer
		var slept []time.Duration
		err := play(context.Background(), strings.NewReader(cast), &out, tc.speed, tc.idle, func(_ context.Context, d time.Duration) error {
			slept = append(slept, d)
			return nil
		})
		if err != nil {
			t.Fatal(err)
		}
		if out.String() != "ab\r\nc" {
			t.Errorf("speed %v: played %q", tc.speed, out.String())
		}
		if len(slept) != len(tc.want) {
			t.Fatalf("speed %v idle %v: pauses %v, want %v", tc.speed, tc.idle, slept, tc.want)
		}
		for i := range slept {
			if d := slept[i] - tc.want[i]; d < -time.Millisecond || d > time.Millisecond {
				t.Errorf("speed %v idle %v: pauses %v, want %v", tc.speed, tc.idle, slept, tc.want)
				break
			}
		}
	}
}

func TestPlayRefusesWhatIsNoTranscript(t *testing.T) {
	for _, in := range []string{"", "not json\n", `{"version":1}` + "\n", "{\"version\":2}\n[oops\n"} {
		err := play(context.Background(), strings.NewReader(in), &bytes.Buffer{}, 1, 0, func(context.Context, time.Duration) error { return nil })
		if err == nil {
			t.Errorf("%q played", in)
		}
	}
}
