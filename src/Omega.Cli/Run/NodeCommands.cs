using System.CommandLine;
using Omega.Protocol;

namespace Omega.Cli.Run;

/// <summary>
/// <c>omega node ...</c>: operator commands about nodes against a running server (<c>remove</c> is in ControlCommands). <c>confirm-lost</c> tells the
/// lifecycle controller that a failure domain's capacity is really gone, so its silent nodes are evicted even while the
/// mass-silence brake holds evictions back; <c>--withdraw</c> takes the confirmation back. Both are recorded durably
/// with author, reason and time, and acknowledged only once durable.
/// </summary>
internal static class NodeCommands
{
    public static Command Create()
    {
        var node = new Command("node", "Operate on the nodes of a running server: confirm a failure domain lost, remove a node.");
        node.Subcommands.Add(ConfirmLost());
        node.Subcommands.Add(ControlCommands.NodeRemove());
        return node;
    }

    private static Command ConfirmLost()
    {
        var connect = ControlCommands.ConnectOption();
        var domain = new Option<string>("--domain") { Description = "The failure domain (rack), zone or region whose nodes are lost (a region confirmed lost is evicted at once, without the rate limit).", Required = true };
        var reason = new Option<string>("--reason") { Description = "Why (recorded with the confirmation).", Required = true };
        var author = new Option<string?>("--author") { Description = "Who confirms (recorded; default: the user name)." };
        var withdraw = new Option<bool>("--withdraw") { Description = "Withdraw the confirmation: the mass-silence brake applies to the domain again." };
        var output = Output.Option();
        var cmd = new Command("confirm-lost", "Confirm a failure domain lost: its silent nodes are evicted despite the mass-silence brake (recorded durably).")
        {
            connect, domain, reason, author, withdraw, output,
        };
        var tls = ClientTls.AddTo(cmd);
        cmd.SetAction((r, cancel) =>
        {
            if (!Output.TryParse("node confirm-lost", r.GetValue(output), out var format)) return Task.FromResult(2);
            string d = r.GetValue(domain)!.Trim(), why = r.GetValue(reason)!.Trim();
            string who = (r.GetValue(author) ?? Environment.UserName).Trim();
            if (d.Length is 0 or > 256 || why.Length is 0 or > 1024 || who.Length is 0 or > 256)
            {
                Console.Error.WriteLine("omega node confirm-lost: --domain and --author must be 1-256 characters, --reason 1-1,024");
                return Task.FromResult(2);
            }
            return ControlCommands.WithClientAsync("node confirm-lost", r.GetValue(connect)!, tls, r, async c =>
            {
                var kind = r.GetValue(withdraw) ? OperateKind.WithdrawDomainLoss : OperateKind.ConfirmDomainLost;
                var (status, message) = await c.OperateAsync(kind, d, why, who, cancel).ConfigureAwait(false);
                return Output.PrintOperate("node confirm-lost", kind.ToString(), d, status, message, format);
            }, cancel);
        });
        return cmd;
    }
}
