package hub

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/nats-io/nats.go/jetstream"
)

// Reports: edges that propose their automatic blocks
// (fleet.propose_auto_blocks) publish one message per source to
// ReportSubject(name); the controller reads the stream ReportStream.
const (
	// ReportStream is the JetStream stream of auto-block reports.
	ReportStream = "aegis_reports"
	// ReportSubjectPrefix starts every report subject; the last token is
	// the reporting edge's name, which bus permissions tie to its user.
	ReportSubjectPrefix = "aegis.reports."
	// MaxReportSize bounds one report message.
	MaxReportSize = 1 << 10
	// reportBytes bounds the stream (oldest reports go first): about a
	// million reports, far more than any window holds.
	reportBytes = 256 << 20
	// minReportAge is the least the stream keeps reports.
	minReportAge = time.Hour
)

// ReportSubject is the subject edge name publishes its reports to.
func ReportSubject(name string) string { return ReportSubjectPrefix + name }

// ReportAge is how long the reports stream keeps reports for a controller
// window: three windows, at least an hour, so that a restarted controller
// can re-read its window and a slow one loses nothing.
func ReportAge(window time.Duration) time.Duration {
	return max(minReportAge, 3*window)
}

// EnsureReports creates the reports stream if it does not exist, and
// raises its age limit to ReportAge(window) if it keeps reports for less
// (a hub restarted with a longer window).
func EnsureReports(ctx context.Context, js jetstream.JetStream, replicas int, window time.Duration) error {
	if replicas <= 0 {
		replicas = 1
	}
	age := ReportAge(window)
	st, err := js.Stream(ctx, ReportStream)
	if errors.Is(err, jetstream.ErrStreamNotFound) {
		_, err = js.CreateStream(ctx, jetstream.StreamConfig{
			Name:        ReportStream,
			Description: "aegis fleet: edges' automatic-block reports",
			Subjects:    []string{ReportSubjectPrefix + "*"},
			Storage:     jetstream.FileStorage,
			Replicas:    replicas,
			Retention:   jetstream.LimitsPolicy,
			Discard:     jetstream.DiscardOld,
			MaxAge:      age,
			MaxBytes:    reportBytes,
			MaxMsgSize:  MaxReportSize,
		})
		if err != nil {
			return fmt.Errorf("creating stream %s: %w", ReportStream, err)
		}
		return nil
	}
	if err != nil {
		return fmt.Errorf("opening stream %s: %w", ReportStream, err)
	}
	info, err := st.Info(ctx)
	if err != nil {
		return fmt.Errorf("reading stream %s: %w", ReportStream, err)
	}
	if info.Config.MaxAge != 0 && info.Config.MaxAge < age {
		cfg := info.Config
		cfg.MaxAge = age
		if _, err := js.UpdateStream(ctx, cfg); err != nil {
			return fmt.Errorf("raising the age limit of %s: %w", ReportStream, err)
		}
	}
	return nil
}
