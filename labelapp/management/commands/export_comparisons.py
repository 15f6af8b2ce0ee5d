"""manage.py export_comparisons ROUND: a round's comparisons or rankings, for training elsewhere."""

from django.core.management.base import BaseCommand, CommandError

from labelapp.models import LabelingRound
from labelapp.services.errors import ServiceError
from labelapp.services.exports import JSONL_EXPORTS, save_comparisons_hf

HF = {"hf": "dataset", "parquet": "parquet"}


class Command(BaseCommand):
    help = (
        "Export a round: trl (JSONL {prompt, chosen, rejected}), rankings (JSONL with labeler, "
        "flags, times), hf (a `datasets` directory) or parquet."
    )

    def add_arguments(self, parser):
        parser.add_argument("round", type=int, help="The round's number.")
        parser.add_argument("--format", choices=[*JSONL_EXPORTS, *HF], default="trl")
        parser.add_argument("--out", help="File or directory to write; JSONL goes to stdout.")

    def handle(self, round, format, out, **options):  # noqa: A002
        round_ = LabelingRound.objects.filter(number=round).first()
        if round_ is None:
            raise CommandError(f"no round {round}")
        if format in HF:
            if not out:
                raise CommandError(f"--format {format} needs --out PATH")
            try:
                rows = save_comparisons_hf(round_, out, format=HF[format])
            except ServiceError as exc:
                raise CommandError(exc.detail) from None
            self.stdout.write(f"Wrote {rows} comparisons of round {round} to {out}.")
            return
        if not out:
            rows = self._write(self.stdout, round_, format)
            self.stderr.write(f"{rows} rows of round {round}.")  # stdout holds only the JSONL
            return
        try:
            with open(out, "w", encoding="utf-8") as f:
                rows = self._write(f, round_, format)
        except OSError as exc:
            raise CommandError(f"cannot write {out}: {exc.strerror}") from None
        self.stdout.write(f"Wrote {rows} rows of round {round} to {out}.")

    def _write(self, stream, round_: LabelingRound, format: str) -> int:  # noqa: A002
        rows = 0
        for line in JSONL_EXPORTS[format](round_):
            stream.write(line)
            rows += 1
        return rows
