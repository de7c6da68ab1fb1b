package app

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/spf13/cobra"

	"github.com/meshery/terminal-apiserver/pkg/transcript"
)

type replayOptions struct {
	speed     float64
	idleLimit float64 // seconds, as asciinema's --idle-time-limit
	uid       string
	follow    bool
}

func (o *options) replayCommand() *cobra.Command {
	r := &replayOptions{}
	cmd := &cobra.Command{
		Use:   "replay NAME [--speed N] [--idle-limit SECONDS] [--uid UID] [--follow]",
		Short: "Play a TerminalSession's transcript with its recorded timing",
		Long: "Play a session's transcript (asciicast v2) in this terminal, as `asciinema play` would: its output with the " +
			"recorded pauses, scaled by --speed, none longer than --idle-limit. The owner may replay their own sessions; " +
			"others, and sessions deleted since (--uid), need the replay grant. `kubectl get --raw` saves the .cast itself.",
		Example: "  kubectl terminal replay shell-demo-x7k2p --speed 2 --idle-limit 1\n" +
			"  kubectl terminal replay shell-demo-x7k2p --uid 0b5c1f1e-7d3a-4c7e-9a51-2f0a1c6d8e90",
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error { return o.replay(cmd.Context(), args[0], r) },
	}
	cmd.Flags().Float64Var(&r.speed, "speed", 1, "Playback speed: 2 plays twice as fast")
	cmd.Flags().Float64Var(&r.idleLimit, "idle-limit", 0, "Longest pause, in seconds (0: as recorded, or the transcript's own limit)")
	cmd.Flags().StringVar(&r.uid, "uid", "", "The UID of a session of this name that was deleted, or re-created since")
	cmd.Flags().BoolVarP(&r.follow, "follow", "f", false, "Keep playing while the session runs, until it ends")
	return cmd
}

func (o *options) replay(ctx context.Context, name string, r *replayOptions) error {
	if r.speed <= 0 {
		return fmt.Errorf("--speed must be positive, got %v", r.speed)
	}
	if r.idleLimit < 0 {
		return fmt.Errorf("--idle-limit must not be negative, got %v", r.idleLimit)
	}
	ctx, stop := signal.NotifyContext(ctx, os.Interrupt, syscall.SIGTERM)
	defer stop()
	c, err := o.clients()
	if err != nil {
		return err
	}
	// kubernetes' REST client decodes the Status of a refusal into the
	// error (403 naming the verb missing, 404).
	req := c.kube.Discovery().RESTClient().Get().
		AbsPath("/apis/terminal.meshery.io/v1alpha1/namespaces", c.namespace, "terminalsessions", name, "transcript")
	if r.uid != "" {
		req = req.Param("uid", r.uid)
	}
	if r.follow {
		req = req.Param("follow", "true")
	}
	stream, err := req.Stream(ctx)
	if err != nil {
		return err
	}
	defer stream.Close()
	return play(ctx, stream, o.streams.Out, r.speed, r.idleLimit, sleepCtx)
}

// sleepCtx waits d, or until ctx ends.
func sleepCtx(ctx context.Context, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// play writes a transcript's output events to out with their pauses,
// divided by speed and cut to idleLimit seconds (0: the header's
// idle_time_limit, if any), as asciinema play does.
func play(ctx context.Context, cast io.Reader, out io.Writer, speed, idleLimit float64, sleep func(context.Context, time.Duration) error) error {
	sc := bufio.NewScanner(cast)
	sc.Buffer(nil, 8<<20) // a line is one event: up to a frame of output, escaped
	if !sc.Scan() {
		if err := sc.Err(); err != nil {
			return err
		}
		return errors.New("the transcript is empty")
	}
	var h struct {
		Version       int     `json:"version"`
		IdleTimeLimit float64 `json:"idle_time_limit"`
	}
	if err := json.Unmarshal(sc.Bytes(), &h); err != nil || h.Version != 2 {
		return fmt.Errorf("not an asciicast v2 transcript: %q", truncate(sc.Text(), 80))
	}
	if idleLimit == 0 {
		idleLimit = h.IdleTimeLimit
	}
	last := 0.0
	for sc.Scan() {
		var ev [3]any
		if err := json.Unmarshal(sc.Bytes(), &ev); err != nil {
			return fmt.Errorf("transcript event %q: %w", truncate(sc.Text(), 80), err)
		}
		at, _ := ev[0].(float64)
		code, _ := ev[1].(string)
		data, _ := ev[2].(string)
		if code != transcript.Output {
			continue
		}
		pause := at - last
		last = at
		if idleLimit > 0 && pause > idleLimit {
			pause = idleLimit
		}
		if pause > 0 {
			if err := sleep(ctx, time.Duration(pause/speed*float64(time.Second))); err != nil {
				return err
			}
		}
		if _, err := io.WriteString(out, data); err != nil {
			return err
		}
	}
	return sc.Err()
}

func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n] + "…"
}
