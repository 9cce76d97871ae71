"""Deterministic corpus of French news seeds, about 2.4 KB each, for the benchmark suite.

    python bench/corpus.py OUT_DIR N [--start I] [--seed S] [--same-mtime]

Seed file i (0-based) is a function of (seed, i) alone, so the first 10,000 files of a
100,000-file corpus are the 10,000-file corpus. File names sort in index order
(`000042_3fa9c1d2.txt`), slugs are unique (`...-000042`), and mtimes are distinct and
increasing with the index (MTIME_BASE + i * MTIME_STEP, all in the past), so "newest first"
is the reverse index order, whatever the file system or the speed of the writer.
With `--same-mtime`, every file gets one mtime (the time the corpus is written), as `git
clone`, `cp -r`, `rsync -t` or `unzip` leave a site's archive moved in: the migration corpus.

Only the standard library: feedsvc is not imported.
"""

from __future__ import annotations

import argparse
import hashlib
import os
import random
import sys
import time
from pathlib import Path

DEFAULT_SEED = 20250611
#: 2024-01-01T00:00:00Z; file i gets MTIME_BASE + i * MTIME_STEP (100,000 files: ~69 days).
MTIME_BASE = 1_704_067_200
MTIME_STEP = 60
TARGET_BYTES = (2250, 2550)  # whole file, UTF-8: about 2.4 KB

# -- vocabulary ------------------------------------------------------------------------------

_PEOPLE = [
    "le président de la République", "la Première ministre", "le ministre de l’Intérieur",
    "la ministre de la Culture", "le porte-parole du gouvernement", "le maire de Marseille",
    "la présidente de la région Occitanie", "le secrétaire général de l’ONU",
    "le chancelier allemand", "la présidente de la Commission européenne",
    "le gouverneur de la Banque de France", "la procureure de Paris", "le préfet du Rhône",
    "le patron de la SNCF", "la directrice de l’Agence régionale de santé",
    "le premier secrétaire du Parti socialiste", "la députée écologiste",
    "le sénateur centriste", "l’ancien ministre des Finances", "le syndicat majoritaire",
    "l’intersyndicale", "le Conseil constitutionnel", "la Cour des comptes",
    "l’Élysée", "Matignon", "le Quai d’Orsay", "Bercy", "la mairie de Lyon",
    "l’opposition", "la majorité présidentielle", "le Kremlin", "la Maison-Blanche",
    "le gouvernement espagnol", "les autorités ukrainiennes", "l’état-major des armées",
    "Météo-France", "l’Insee", "l’Assemblée nationale", "le Sénat", "la CGT", "la CFDT",
    "l’UEFA", "le comité d’organisation", "l’entraîneur des Bleus", "la capitaine de l’équipe",
]
_VERBS = [
    "a annoncé", "a confirmé", "a démenti", "a dénoncé", "a salué", "a réclamé",
    "a présenté", "a défendu", "a critiqué", "a estimé", "a rappelé", "a précisé",
    "a promis", "a reconnu", "a réaffirmé", "a révélé", "a évoqué", "a détaillé",
    "a jugé « inacceptable »", "a qualifié d’« historique »", "a écarté", "a commenté",
    "a remis en cause", "a soutenu", "a chiffré", "a contesté",
]
_THINGS = [
    "la réforme des retraites", "le projet de loi sur l’immigration", "le budget de l’État",
    "la hausse des prix de l’énergie", "le plan de relance européen", "la sécheresse estivale",
    "la grève des contrôleurs aériens", "le sommet du G20", "l’accord de libre-échange",
    "la crise du logement", "la fermeture de l’usine", "le nouveau plan vélo",
    "la réouverture de Notre-Dame", "la candidature de la ville aux Jeux olympiques",
    "l’aide militaire à l’Ukraine", "le cessez-le-feu à Gaza", "la taxe sur les superprofits",
    "le déficit public", "la pénurie de médecins", "la réforme du lycée professionnel",
    "le prix du gazole", "la loi de programmation militaire", "l’inflation alimentaire",
    "le chômage des jeunes", "la transition énergétique", "la protection des océans",
    "la vague de chaleur", "les inondations dans le Pas-de-Calais", "le festival d’Avignon",
    "la Coupe du monde de rugby", "le Tour de France", "la rentrée scolaire",
    "l’intelligence artificielle générative", "la cybersécurité des hôpitaux",
    "le marché de l’électricité", "la dette des collectivités", "l’élection européenne",
    "le référendum local", "la pollution de l’air", "la fermeture des urgences de nuit",
]
_WHEN = [
    "mardi soir", "ce lundi", "dans la nuit de jeudi à vendredi", "samedi matin",
    "à l’issue du Conseil des ministres", "lors d’une conférence de presse",
    "dans un entretien au « Monde »", "sur France Inter", "devant les députés",
    "dans un communiqué publié dimanche", "à la sortie de l’Élysée", "au journal de 20 heures",
    "en marge du sommet", "quelques heures après l’annonce", "dès mercredi",
    "à la veille du scrutin", "depuis Bruxelles", "lors d’un déplacement à Lille",
]
_QUOTES = [
    "« nous ne reculerons pas »", "« c’est une étape décisive »",
    "« la situation reste très préoccupante »", "« il faut agir vite »",
    "« rien n’est encore décidé »", "« nous serons au rendez-vous »",
    "« c’est un signal fort envoyé aux Français »", "« la porte reste ouverte au dialogue »",
    "« personne ne peut s’en satisfaire »", "« l’heure n’est plus aux promesses »",
    "« nous avons été entendus »", "« c’est une victoire collective »",
    "« le compte n’y est pas »", "« il y a urgence »", "« nous irons jusqu’au bout »",
]
_CONNECT = [
    "Selon nos informations,", "D’après l’entourage du ministre,", "Dans le détail,",
    "Par ailleurs,", "En revanche,", "Pour l’heure,", "À en croire les syndicats,",
    "Selon l’AFP,", "Côté opposition,", "Sur le terrain,", "Au total,",
    "Dans l’immédiat,", "À Bruxelles,", "En coulisses,", "De son côté,", "Toutefois,",
]
_FIGURES = [
    "plus de 12 000 personnes", "près de 3,5 milliards d’euros", "environ 40 % des sondés",
    "une hausse de 7,2 % sur un an", "quelque 800 emplois", "moins de 2 % du PIB",
    "trois départements", "une quinzaine de communes", "deux tiers des Français",
    "un million de foyers", "150 kilomètres de bouchons", "38,5 °C à l’ombre",
]
_TAILS = [
    "selon un décompte de la préfecture", "d’après les chiffres du ministère",
    "selon une étude publiée jeudi", "d’après un sondage Ifop", "selon les organisateurs",
    "d’après l’Insee", "selon la police", "d’après une source proche du dossier",
]
_PLACES = [
    "à Paris", "à Lyon", "à Marseille", "à Toulouse", "à Nantes", "à Strasbourg",
    "à Bordeaux", "à Lille", "à Rennes", "à Montpellier", "en Bretagne", "en Corse",
    "outre-Manche", "à Kiev", "à Bruxelles", "à Genève", "à Berlin", "à Madrid",
]
_VERDICTS = ["une priorité", "un échec", "un tournant", "une nécessité", "un pari risqué"]
_SLUG_WORDS = [
    "reforme", "budget", "greve", "sommet", "accord", "crise", "loi", "vote", "enquete",
    "energie", "climat", "sante", "ecole", "emploi", "logement", "transport", "europe",
    "ukraine", "justice", "culture", "sport", "rugby", "football", "meteo", "canicule",
    "inflation", "retraites", "senat", "assemblee", "elysee", "syndicats", "hopital",
]


def _cap(text: str) -> str:
    return text[:1].upper() + text[1:]


def _sentence(rng: random.Random) -> str:
    kind = rng.randrange(6)
    if kind == 0:
        return (f"{_cap(rng.choice(_PEOPLE))} {rng.choice(_VERBS)} {rng.choice(_THINGS)} "
                f"{rng.choice(_WHEN)}.")
    if kind == 1:
        return (f"{rng.choice(_CONNECT)} {rng.choice(_PEOPLE)} {rng.choice(_VERBS)} "
                f"{rng.choice(_THINGS)}, {rng.choice(_PLACES)}.")
    if kind == 2:
        return (f"« {_cap(rng.choice(_THINGS))} ? C’est {rng.choice(_VERDICTS)} », "
                f"a déclaré {rng.choice(_PEOPLE)} {rng.choice(_WHEN)}.")
    if kind == 3:
        return (f"{_cap(rng.choice(_THINGS))} concerne {rng.choice(_FIGURES)}, "
                f"{rng.choice(_TAILS)}, {rng.choice(_PLACES)} comme ailleurs.")
    if kind == 4:
        return (f"Pour {rng.choice(_PEOPLE)}, {rng.choice(_QUOTES)}, même si "
                f"{rng.choice(_THINGS)} divise encore.")
    return (f"{rng.choice(_CONNECT)} le dossier de {rng.choice(_THINGS)} sera de nouveau "
            f"sur la table {rng.choice(_WHEN)}, {rng.choice(_TAILS)}.")


def seed_text(index: int, seed: int = DEFAULT_SEED, slug_prefix: str = "") -> tuple[str, str]:
    """(slug, text) of seed `index`: slug line, headline, blank line, 3 to 6 paragraphs."""
    rng = random.Random(f"{seed}:{index}")
    words = rng.sample(_SLUG_WORDS, 3)
    slug = f"{slug_prefix}{'-'.join(words)}-{index:06d}"
    headline = (f"{_cap(rng.choice(_THINGS))} : {rng.choice(_PEOPLE)} {rng.choice(_VERBS)} "
                f"{rng.choice(_THINGS)} {rng.choice(_WHEN)}")
    target = rng.randint(*TARGET_BYTES)
    count = rng.randint(3, 6)
    size = len(slug) + len(headline.encode()) + 3
    per_paragraph = (target - size) // count
    paragraphs: list[str] = []
    for _ in range(count):
        sentences: list[str] = []
        length = 0
        while length < per_paragraph - 60:
            sentence = _sentence(rng)
            sentences.append(sentence)
            length += len(sentence.encode()) + 1
        paragraphs.append(" ".join(sentences))
    return slug, f"{slug}\n{headline}\n\n" + "\n\n".join(paragraphs) + "\n"


def file_name(index: int, seed: int = DEFAULT_SEED) -> str:
    tag = hashlib.blake2b(f"{seed}:{index}".encode(), digest_size=4).hexdigest()
    return f"{index:06d}_{tag}.txt"


def mtime_of(index: int) -> int:
    return MTIME_BASE + index * MTIME_STEP


def write_corpus(folder: Path, count: int, start: int = 0, seed: int = DEFAULT_SEED,
                 same_mtime: int | None = None) -> list[str]:
    """Write seeds start..start+count-1 into `folder` (created if needed); return their slugs.
    Files are written directly (the folder is not being watched while it is generated)."""
    folder.mkdir(parents=True, exist_ok=True)
    slugs: list[str] = []
    for index in range(start, start + count):
        slug, text = seed_text(index, seed)
        path = os.path.join(folder, file_name(index, seed))
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
        try:
            os.write(fd, text.encode())
        finally:
            os.close(fd)
        mtime = mtime_of(index) if same_mtime is None else same_mtime
        os.utime(path, (mtime, mtime))
        slugs.append(slug)
    return slugs


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("folder", type=Path)
    parser.add_argument("count", type=int)
    parser.add_argument("--start", type=int, default=0)
    parser.add_argument("--seed", type=int, default=DEFAULT_SEED)
    parser.add_argument("--same-mtime", action="store_true",
                        help="one mtime for every file (now), as a git clone or cp -r leaves")
    args = parser.parse_args(argv)
    began = time.perf_counter()
    write_corpus(args.folder, args.count, args.start, args.seed,
                 int(time.time()) if args.same_mtime else None)
    elapsed = time.perf_counter() - began
    total = sum(entry.stat().st_size for entry in os.scandir(args.folder))
    print(f"{args.count} seeds in {args.folder} in {elapsed:.1f} s "
          f"({total / max(1, args.count):.0f} bytes each on average)", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
