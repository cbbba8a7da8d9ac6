namespace Omega.Cells.Tests;

/// <summary>
/// Runs the cell tests that build their cell through <see cref="Apply"/> against another commit path, chosen with the
/// environment variable <c>OMEGA_TEST_COMMIT_PATH</c> (a <see cref="CommitPath"/> name, e.g. <c>Striped</c>), so the whole
/// existing suite can be pointed at a new path without copying it (issue 14). Unset: the option's own default.
/// </summary>
internal static class TestCommitPath
{
    public static CommitPath? FromEnvironment =>
        Enum.TryParse<CommitPath>(Environment.GetEnvironmentVariable("OMEGA_TEST_COMMIT_PATH"), ignoreCase: true, out var p) ? p : null;

    /// <summary>Sets <paramref name="options"/>' path to <paramref name="path"/>, else to the environment's, else leaves it.</summary>
    public static CellOptions Apply(CellOptions options, CommitPath? path = null)
    {
        if ((path ?? FromEnvironment) is { } chosen) options.CommitPath = chosen;
        return options;
    }
}
