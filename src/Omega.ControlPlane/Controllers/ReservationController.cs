using System.Diagnostics.Metrics;
using Omega.Cells;

namespace Omega.ControlPlane.Controllers;

/// <summary>Settings of the <see cref="ReservationController"/>.</summary>
public sealed class ReservationControllerOptions
{
    /// <summary>How often the controller looks for expired reservations (default one second).</summary>
    public TimeSpan Interval { get; set; } = TimeSpan.FromSeconds(1);

    /// <summary>Most reservations released per step (one critical section, one journal frame); a full step runs again at once.</summary>
    public int MaxPerStep { get; set; } = 1000;

    /// <summary>
    /// The repair deadline: an expired reservation still held this long after its expiry is overdue (the controller is
    /// stuck or was down), counted in <see cref="ReservationController.Overdue"/> and the
    /// <c>omega.controlplane.reservations.overdue</c> gauge, which an alert watches.
    /// </summary>
    public TimeSpan RepairDeadline { get; set; } = TimeSpan.FromSeconds(30);
}

/// <summary>
/// The reservation controller (docs/control-plane.md, "Reservations"): releases the cell's expired reservations, so an
/// expired hold is never leaked. Level-triggered: every step reads which reservations are past their expiry now and
/// releases them (journaled, so a release survives a crash, and a crash before it is repeated by the next step after the
/// restart). Runs only on the injected <see cref="IControllerScheduler"/>.
/// </summary>
public sealed class ReservationController : IDisposable
{
    /// <summary>The meter the control-plane controllers report on.</summary>
    public const string MeterName = "Omega.ControlPlane";

    private readonly Cell _cell;
    private readonly IControllerScheduler _scheduler;
    private readonly ReservationControllerOptions _options;
    private readonly Meter _meter;
    private long _released;
    private long _steps;
    private int _overdue;
    private volatile bool _stopped;

    /// <summary>Creates the controller (call <see cref="Start"/>).</summary>
    public ReservationController(Cell cell, IControllerScheduler scheduler, ReservationControllerOptions? options = null, IMeterFactory? meterFactory = null)
    {
        _cell = cell ?? throw new ArgumentNullException(nameof(cell));
        _scheduler = scheduler ?? throw new ArgumentNullException(nameof(scheduler));
        _options = options ?? new ReservationControllerOptions();
        _meter = CellCounters.CreateMeter(MeterName, cell.Name, meterFactory);
        _meter.CreateObservableCounter("omega.controlplane.reservations.expired_released", () => Released, "{reservation}", "Expired reservations released by the reservation controller");
        _meter.CreateObservableGauge("omega.controlplane.reservations.overdue", () => Overdue, "{reservation}", "Expired reservations held past the repair deadline");
    }

    /// <summary>Expired reservations released so far.</summary>
    public long Released => Interlocked.Read(ref _released);

    /// <summary>Steps run so far.</summary>
    public long Steps => Interlocked.Read(ref _steps);

    /// <summary>Reservations past expiry + <see cref="ReservationControllerOptions.RepairDeadline"/> found by the last step before it released them.</summary>
    public int Overdue => Volatile.Read(ref _overdue);

    /// <summary>Runs a first step now and then every <see cref="ReservationControllerOptions.Interval"/>.</summary>
    public void Start() => _scheduler.Post(Tick);

    private void Tick()
    {
        if (_stopped) return;
        Step();
        _scheduler.Schedule(_options.Interval, Tick);
    }

    /// <summary>One step: releases what has expired (repeating while steps come back full) and refreshes <see cref="Overdue"/>. Returns the number released.</summary>
    public int Step()
    {
        // Measured before releasing: overdue holds mean the controller was down or stuck past the deadline.
        Volatile.Write(ref _overdue, _cell.CountOverdueReservations(_options.RepairDeadline));
        int total = 0;
        int max = Math.Max(1, _options.MaxPerStep);
        while (true)
        {
            int n = _cell.ReleaseExpiredReservations(max);
            total += n;
            if (n < max) break;
        }
        Interlocked.Add(ref _released, total);
        Interlocked.Increment(ref _steps);
        return total;
    }

    /// <summary>Stops the periodic steps.</summary>
    public void Dispose()
    {
        _stopped = true;
        _meter.Dispose();
    }
}
