# mammosynth: does adding DDPM-synthesised mammograms to a small real data set make CNN classifiers
# better, and do best-validation-loss weights beat last-epoch weights? See README.md.

# The demo config, unless config files are given on the command line: those then stand alone, with
# the schema's defaults for what they leave out (Snakemake would otherwise merge them over the demo).
if not workflow.overwrite_configfiles:

    configfile: "config/config.yaml"


# The front page of `snakemake --report`: what the workflow is.
report: "workflow/report/workflow.rst"


include: "workflow/rules/common.smk"
include: "workflow/rules/data.smk"
include: "workflow/rules/ddpm.smk"
include: "workflow/rules/classify.smk"
include: "workflow/rules/report.smk"


rule all:
    default_target: True
    input:
        layout.report(),
