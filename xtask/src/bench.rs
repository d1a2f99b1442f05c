pub fn run(_args: &BenchArgs) -> anyhow::Result<()> {
    anyhow::bail!("not written yet")
}
#[derive(clap::Args)]
pub struct BenchArgs {}
