# lzflow: projected WIMP sensitivity of a liquid-xenon TPC.
#   snakemake --cores all                      # default analysis (config/config.yaml)
#   snakemake --cores 2 --configfile config/quick.yaml
#   snakemake -n                               # show the job graph
from snakemake.utils import min_version

min_version("9.0")


configfile: "config/config.yaml"


include: "workflow/rules/common.smk"
include: "workflow/rules/detector.smk"
include: "workflow/rules/pdfs.smk"
include: "workflow/rules/stats.smk"


localrules:
    all,
    curve,
    errors,


rule all:
    default_target: True
    input:
        all_targets(),
