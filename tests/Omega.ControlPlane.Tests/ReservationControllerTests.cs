using Microsoft.Extensions.Time.Testing;
using Omega.Cells;
using Omega.ControlPlane.Controllers;

namespace Omega.ControlPlane.Tests;

/// <summary>The reservation controller releases expired reservations on its scheduler, never before their expiry.</summary>
public sealed class ReservationControllerTests
{
    [Fact]
    public void An_expired_reservation_is_released_by_the_controller_and_its_capacity_is_free_again()
    {
        var time = new FakeTimeProvider(new DateTimeOffset(2026, 1, 1, 0, 0, 0, TimeSpan.Zero));
        using var cell = new Cell(new CellOptions { Time = time });
        var n0 = cell.AddNode(new NodeSpec("n0", new ResourceVector(4000, 0)));
        var lease = cell.AcquireLease("s", TimeSpan.FromHours(1)).Lease;
        var tx = new Transaction(lease);
        tx.Add(new Claim(new TaskId(1, 0), n0, new ResourceVector(3000, 0), 0, Kind: ClaimKind.Reserve, Ttl: TimeSpan.FromSeconds(5)));
        tx.Add(new Claim(new TaskId(2, 0), n0, new ResourceVector(1000, 0), 0, Kind: ClaimKind.Reserve, Ttl: TimeSpan.FromSeconds(60)));
        Assert.Equal(TransactionStatus.Committed, cell.Commit(tx).Status);

        var scheduler = new ManualControllerScheduler(time);
        using var controller = new ReservationController(cell, scheduler, new ReservationControllerOptions { Interval = TimeSpan.FromSeconds(1), RepairDeadline = TimeSpan.FromSeconds(10) });
        controller.Start();
        scheduler.RunUntilIdle();
        Assert.Equal(2, cell.ReservationCount); // nothing has expired: nothing is released early
        time.Advance(TimeSpan.FromSeconds(4));
        scheduler.RunUntilIdle();
        Assert.Equal(2, cell.ReservationCount);
        time.Advance(TimeSpan.FromSeconds(1));
        scheduler.RunUntilIdle();
        Assert.Equal(1, cell.ReservationCount);
        Assert.False(cell.TryGetReservation(new TaskId(1, 0), out _));
        Assert.Equal(1, controller.Released);
        Assert.Equal(0, controller.Overdue);
        Assert.Equal(1, cell.ReservationsReleased(ReservationReleaseReason.Expired));
        Assert.Empty(cell.Audit());

        // The freed capacity is bindable again.
        var bind = new Transaction(lease);
        bind.Add(new Claim(new TaskId(3, 0), n0, new ResourceVector(3000, 0), 0));
        Assert.Equal(TransactionStatus.Committed, cell.Commit(bind).Status);
        Assert.Equal(3, controller.Steps); // one at start, one per advance: a step every interval, no busy loop
    }

    [Fact]
    public void A_controller_that_was_down_past_the_repair_deadline_reports_the_overdue_holds_and_releases_them()
    {
        var time = new FakeTimeProvider(new DateTimeOffset(2026, 1, 1, 0, 0, 0, TimeSpan.Zero));
        using var cell = new Cell(new CellOptions { Time = time });
        var n0 = cell.AddNode(new NodeSpec("n0", new ResourceVector(4000, 0)));
        var lease = cell.AcquireLease("s", TimeSpan.FromHours(1)).Lease;
        var tx = new Transaction(lease);
        for (int i = 0; i < 5; i++) tx.Add(new Claim(new TaskId(i, 0), n0, new ResourceVector(100, 0), 0, Kind: ClaimKind.Reserve, Ttl: TimeSpan.FromSeconds(1)));
        Assert.Equal(TransactionStatus.Committed, cell.Commit(tx).Status);
        time.Advance(TimeSpan.FromMinutes(5));
        var scheduler = new ManualControllerScheduler(time);
        // MaxPerStep 2: a full step repeats at once, so all five go in one tick.
        using var controller = new ReservationController(cell, scheduler, new ReservationControllerOptions { MaxPerStep = 2, RepairDeadline = TimeSpan.FromSeconds(30) });
        controller.Start();
        scheduler.RunUntilIdle();
        Assert.Equal(5, controller.Overdue);
        Assert.Equal(5, controller.Released);
        Assert.Equal(0, cell.ReservationCount);
    }
}
