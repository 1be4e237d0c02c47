# The discovery limit versus exposure and the neutrino fog of the baseline analysis (lzflow.fog,
# docs/method.md "Discovery limit and neutrino fog"): not part of `all`; ask for it by name,
#   snakemake --cores 2 fog
# LZ-like mode: every mass's workspace scaled from the configured exposure, 0.1-1e4 t*yr
# (30 exposures), 90 % probability of a 3 sigma discovery (the CLI's documented defaults).


rule fog:
    """Discovery limit vs exposure per mass, gradient index n and the neutrino-fog plot (LZ-like, Asimov)."""
    input:
        per_mass(L.WORKSPACE),
    output:
        csv=out(L.FOG_CSV),
        plot=out(L.FOG_PLOT),
        json=out(L.FOG_JSON),
    params:
        exposure=LZ["exposure"]["exposure_t_yr"],
        code=stage_code_hash("fog"),
    log:
        log_path("fog"),
    benchmark:
        bench_path("fog")
    shell:
        "lzflow fog --workspaces {input:q} --workspace-exposure-t-yr {params.exposure} "
        "--out-csv {output.csv:q} --out-plot {output.plot:q} --out-json {output.json:q} > {log:q} 2>&1"
